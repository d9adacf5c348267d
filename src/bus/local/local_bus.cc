#include "bus/local/local_bus.h"

namespace pigeon {

void LocalBus::PublishFeedEntry(const std::string& user, FeedPos pos, SharedFrame frame) {
  if (sink_) sink_->DeliverFeedEntry(user, pos, std::move(frame));
}

void LocalBus::PublishEphemeral(const std::string& user, SharedFrame frame) {
  if (sink_) sink_->DeliverEphemeral(user, std::move(frame));
}

void LocalBus::PublishCloseDevice(const std::string& user, const std::string& device,
                                  uint16_t code) {
  if (sink_) sink_->CloseDevice(user, device, code);
}

}  // namespace pigeon
