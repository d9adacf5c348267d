// In-process MessageBus: a direct call into this node's sink.
#pragma once

#include "bus/message_bus.h"

namespace pigeon {

class LocalBus final : public MessageBus {
 public:
  void Attach(DeliverySink* sink) override { sink_ = sink; }
  void PublishFeedEntry(const std::string& user, FeedPos pos,
                        FunctionRef<SharedFrame()> frame) override;
  void PublishEphemeral(const std::string& user, SharedFrame frame) override;
  void PublishCloseDevice(const std::string& user, const std::string& device,
                          uint16_t code) override;
  void PublishPresence(const std::string& user, bool online, int64_t last_seen_ms) override;
  void PublishPrivacy(const std::string& user, bool hides_last_seen) override;

 private:
  DeliverySink* sink_ = nullptr;
};

}  // namespace pigeon
