#include "bus/local/local_bus.h"

namespace pigeon {

void LocalBus::PublishFeedEntry(const std::string& user, FeedPos pos,
                                FunctionRef<SharedFrame()> frame) {
  if (sink_) sink_->DeliverFeedEntry(user, pos, frame);
}

void LocalBus::PublishEphemeral(const std::string& user, SharedFrame frame) {
  if (sink_) sink_->DeliverEphemeral(user, std::move(frame));
}

void LocalBus::PublishCloseDevice(const std::string& user, const std::string& device,
                                  uint16_t code) {
  if (sink_) sink_->CloseDevice(user, device, code);
}

void LocalBus::PublishPresence(const std::string& user, bool online, int64_t last_seen_ms) {
  if (sink_) sink_->PresenceChanged(user, online, last_seen_ms);
}

void LocalBus::PublishPrivacy(const std::string& user, bool hides_last_seen) {
  if (sink_) sink_->PrivacyChanged(user, hides_last_seen);
}

}  // namespace pigeon
