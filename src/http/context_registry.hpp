// For owners that keep sockets registered with an io_context beyond one operation (the
// keep-alive pool, the rvenc-mux connections): when that io_context shuts down, before its
// reactor, the registry calls owner->orphan(&context) so the owner lets go of them (a socket object
// must not outlive its reactor). An owner enlists once per io_context.
#pragma once

#include <algorithm>
#include <memory>
#include <mutex>
#include <vector>

#include <boost/asio/execution_context.hpp>

namespace rvenc::http::detail {

template <class Owner>
class ContextRegistry final : public boost::asio::execution_context::service {
 public:
  using key_type = ContextRegistry;
  static inline boost::asio::execution_context::id id;
  explicit ContextRegistry(boost::asio::execution_context& context) : service(context) {}

  // Enlists `owner` on `context` unless `enlisted` (the owner's list, guarded by the caller) says
  // it already is.
  static void enlist_once(boost::asio::execution_context& context, std::weak_ptr<Owner> owner,
                          std::vector<boost::asio::execution_context*>& enlisted) {
    if (std::ranges::find(enlisted, &context) != enlisted.end()) return;
    auto& registry = boost::asio::use_service<ContextRegistry>(context);
    {
      std::lock_guard lock(registry.mutex_);
      std::erase_if(registry.owners_, [](const auto& o) { return o.expired(); });
      registry.owners_.push_back(std::move(owner));
    }
    enlisted.push_back(&context);
  }

 private:
  void shutdown() override {
    std::vector<std::weak_ptr<Owner>> owners;
    {
      std::lock_guard lock(mutex_);
      owners.swap(owners_);
    }
    // Without holding mutex_: an owner holds its own lock while it enlists here.
    for (const auto& weak : owners)
      if (auto owner = weak.lock()) owner->orphan(&context());
  }

  std::mutex mutex_;
  std::vector<std::weak_ptr<Owner>> owners_;
};

}  // namespace rvenc::http::detail
