// Names the calling thread as `top -H`, perf and /proc/PID/task/*/comm show it
// (at most 15 characters: the kernel truncates the rest).
#pragma once

#include <string>

namespace pigeon {

void NameThisThread(const std::string& name);

}  // namespace pigeon
