// InlineFunction: a move-only callable that keeps a functor of up to `Inline`
// bytes in place, and Task, the void() one that threads hand each other.
//
// What one thread hands another per message (a delivery to a socket: the
// connection, a feed position and the frame; a send's completion, and then
// its outcome) is a lambda of 40-170 bytes. std::function keeps only 16 bytes
// in place and allocates for the rest: a malloc and a free per hand-off, half
// a dozen per message. An InlineFunction allocates only for a larger functor.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace pigeon {

template <typename Sig, size_t Inline>
class InlineFunction;

template <typename R, typename... Args, size_t Inline>
class InlineFunction<R(Args...), Inline> {
 public:
  InlineFunction() = default;
  template <typename F>
  requires(!std::is_same_v<std::decay_t<F>, InlineFunction> &&
           std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
      // NOLINTNEXTLINE(google-explicit-constructor): lambdas convert, as to std::function
      InlineFunction(F&& f) {
    using D = std::decay_t<F>;
    if constexpr (Fits<D>()) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
      ops_ = &kInlineOps<D>;
    } else {
      ::new (static_cast<void*>(buf_)) D*(new D(std::forward<F>(f)));
      ops_ = &kHeapOps<D>;
    }
  }
  InlineFunction(InlineFunction&& o) noexcept : ops_(o.ops_) {
    if (ops_) ops_->move(buf_, o.buf_);
    o.ops_ = nullptr;
  }
  InlineFunction& operator=(InlineFunction&& o) noexcept {
    if (this != &o) {
      Reset();
      ops_ = o.ops_;
      if (ops_) ops_->move(buf_, o.buf_);
      o.ops_ = nullptr;
    }
    return *this;
  }
  InlineFunction(const InlineFunction&) = delete;
  InlineFunction& operator=(const InlineFunction&) = delete;
  ~InlineFunction() { Reset(); }

  R operator()(Args... args) { return ops_->call(buf_, std::forward<Args>(args)...); }
  explicit operator bool() const { return ops_ != nullptr; }

  // Whether an F is kept in place, without an allocation: for static_asserts
  // on the hot paths' functors.
  template <typename F>
  static constexpr bool FitsInPlace() {
    return Fits<std::decay_t<F>>();
  }

 private:
  struct Ops {
    R (*call)(void*, Args&&...);
    void (*move)(void* to, void* from);  // moves, then destroys `from`
    void (*destroy)(void*);
  };
  template <typename D>
  static constexpr bool Fits() {
    return sizeof(D) <= Inline && alignof(D) <= alignof(std::max_align_t) &&
           std::is_nothrow_move_constructible_v<D>;
  }
  template <typename D>
  static D& At(void* p) {
    return *std::launder(static_cast<D*>(p));
  }
  template <typename D>
  static constexpr Ops kInlineOps = {
      [](void* p, Args&&... args) -> R { return At<D>(p)(std::forward<Args>(args)...); },
      [](void* to, void* from) {
        ::new (to) D(std::move(At<D>(from)));
        At<D>(from).~D();
      },
      [](void* p) { At<D>(p).~D(); },
  };
  template <typename D>
  static constexpr Ops kHeapOps = {
      [](void* p, Args&&... args) -> R { return (*At<D*>(p))(std::forward<Args>(args)...); },
      [](void* to, void* from) { ::new (to) D*(At<D*>(from)); },
      [](void* p) { delete At<D*>(p); },
  };
  void Reset() {
    if (ops_) ops_->destroy(buf_);
    ops_ = nullptr;
  }

  alignas(std::max_align_t) unsigned char buf_[Inline];
  const Ops* ops_ = nullptr;
};

// What a thread posts to an event loop's mailbox. Room for a connection, an
// ack's whole outcome, or a feed entry and its frame.
using Task = InlineFunction<void(), 144>;

}  // namespace pigeon
