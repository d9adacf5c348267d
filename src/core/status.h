// Status and error codes shared by every layer. No exceptions cross a
// component boundary: functions return Status or Result<T>.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace pigeon {

// The protocol's error codes (spec: "HTTP API"). kInternal never reaches a
// client as such; it is reported as `unavailable`.
enum class ErrorCode {
  kOk,
  kBadRequest,
  kUnauthorized,
  kForbidden,
  kNotFound,
  kConflict,
  kTooLarge,
  kRateLimited,
  kUnavailable,
  kInternal,
};

inline constexpr int kErrorCodeCount = 10;

// The wire name, e.g. "bad_request".
std::string_view ErrorCodeName(ErrorCode code);
// The HTTP status that carries `code`, e.g. 400.
int HttpStatusFor(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// A value or an error.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace pigeon
