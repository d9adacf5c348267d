#pragma once

#include <memory>
#include <string>

namespace pigeon {
// An encoded server frame (JSON text), shared by every socket it goes to.
using SharedFrame = std::shared_ptr<const std::string>;
}  // namespace pigeon
