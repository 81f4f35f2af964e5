#include "rvenc/client/client.hpp"

#include <cctype>
#include <ctime>
#include <exception>
#include <mutex>
#include <utility>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/system/system_error.hpp>

#include "rvenc/common/hex.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/url.hpp"
#include "rvenc/http/watchdog.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/sealing.hpp"

namespace rvenc::client {

namespace asio = boost::asio;
namespace json = boost::json;
using http::awaitable;

namespace {

// Bodies read whole (attestation, model list, HTTP error answers) are small JSON documents.
constexpr std::uint64_t kMaxJsonResponseBytes = 1024 * 1024;
constexpr std::size_t kMaxApiKeyBytes = 256;
constexpr std::string_view kChatPath = "/rvenc/chat/completions";
constexpr std::string_view kAttestationPath = "/rvenc/attestation";
constexpr std::string_view kModelsPath = "/rvenc/models";
// After the authenticated done only the end of the chunked body should follow, normally with done
// or at once: waited for this long (at most), so the connection can be reused, then dropped.
constexpr std::chrono::milliseconds kEndAfterDoneWait{250};
constexpr std::size_t kMaxBytesAfterDone = 64 * 1024;

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

Status validate(const ClientOptions& options, bool need_api_key) {
  if (need_api_key) {
    if (options.api_key.empty()) return fail(Errc::invalid_request, "api_key is required");
    if (options.api_key.size() > kMaxApiKeyBytes) return fail(Errc::invalid_request, "api_key is too long");
    for (const char c : options.api_key)
      if (!std::isgraph(static_cast<unsigned char>(c)))
        return fail(Errc::invalid_request, "api_key contains whitespace or control characters");
  }
  if (options.request_timeout <= std::chrono::milliseconds::zero())
    return fail(Errc::invalid_request, "request_timeout must be positive");
  if (options.total_timeout && *options.total_timeout <= std::chrono::milliseconds::zero())
    return fail(Errc::invalid_request, "total_timeout must be positive when set");
  if (options.max_buffer_size == 0) return fail(Errc::invalid_request, "max_buffer_size must be positive");
  if (options.protocol_version != protocol::Version::v1 && options.protocol_version != protocol::Version::v2 &&
      options.protocol_version != protocol::Version::v3)
    return fail(Errc::invalid_request, "protocol_version must be 1, 2 or 3");
  return {};
}

}  // namespace

namespace detail {

struct ClientState {
  ClientState(std::size_t max_idle_connections, std::string ca_file)
      : http(http::ClientOptions{.max_idle_per_host = max_idle_connections,
                                 .body_limit = kMaxJsonResponseBytes,
                                 .ca_file = std::move(ca_file)}) {}

  ClientOptions options;
  http::Url base;
  http::Client http;

  std::mutex mutex;
  std::shared_ptr<const EncryptionKeys> keys;  // guarded by mutex

  // While one call makes the keys it needs (current_keys), concurrent ones wait for its result
  // instead of each attesting. Thread-safe wake-ups: the waiters may run on other io_contexts
  // (blocking calls) or threads. All guarded by mutex.
  using Wakeup = asio::experimental::concurrent_channel<void(boost::system::error_code)>;
  bool making_keys = false;
  std::uint64_t attempts_finished = 0;
  std::optional<Error> last_attempt_error;  // of the attempt that finished last (none if cancelled)
  std::vector<std::shared_ptr<Wakeup>> waiting;

  [[nodiscard]] http::Timeouts timeouts() const {
    return http::Timeouts{.connect = options.request_timeout, .idle = options.request_timeout};
  }

  // A transport failure of the http layer in the SDK's terms.
  [[nodiscard]] Error transport_error(const Error& error) const {
    if (error.code == Errc::upstream_timeout)
      return Error{Errc::timeout, "no answer from the gateway " + base.origin() + " within " +
                                      std::to_string(options.request_timeout.count()) + " ms"};
    // A TLS failure keeps its code: the fix is a certificate or a URL, not a retry.
    const Errc code = error.code == Errc::tls_error ? Errc::tls_error : Errc::transport_error;
    return Error{code, "cannot talk to the gateway " + base.origin() + ": " + error.message};
  }

  awaitable<Result<std::string>> get_json(std::string target, bool with_api_key) {
    http::Request request = http::make_request(http::Verb::get, base.join(target));
    if (with_api_key) request.set(http::beast::http::field::authorization, "Bearer " + options.api_key);
    auto response = co_await http.request(base, std::move(request), timeouts());
    if (!response) co_return std::unexpected(transport_error(response.error()));
    if (response->result_int() != 200) co_return std::unexpected(error_from_http(response->result_int(), response->body()));
    co_return std::move(response->body());
  }

  awaitable<Result<json::object>> models() {
    auto body = co_await get_json(std::string(kModelsPath), true);
    if (!body) co_return std::unexpected(body.error());
    boost::system::error_code ec;
    json::value value = json::parse(*body, ec);
    if (ec || !value.is_object()) co_return fail(Errc::upstream_error, "the model list is not a JSON object");
    co_return std::move(value.as_object());
  }

  awaitable<Result<protocol::AttestationDocument>> attest() {
    const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
    // With the API key when there is one: the gateway limits attestation per address only for
    // callers without a valid key (many clients behind one address).
    auto body = co_await get_json(std::string(kAttestationPath) + "?challenge=" + to_hex(challenge),
                                  !options.api_key.empty());
    if (!body) co_return std::unexpected(body.error());
    auto document = protocol::parse_attestation(*body);
    if (!document)
      co_return std::unexpected(
          Error{Errc::attestation_failed, "the attestation document is malformed: " + document.error().message});
    if (auto verified = protocol::verify_attestation(*document, challenge, options.attestation); !verified)
      co_return std::unexpected(Error{Errc::attestation_failed, verified.error().message});
    co_return std::move(*document);
  }

  // Verified attestation, fresh encapsulation; the new keys replace the ones in use.
  awaitable<Result<std::shared_ptr<const EncryptionKeys>>> generate_keys() {
    auto document = co_await attest();
    if (!document) co_return std::unexpected(document.error());
    auto encapsulation = crypto::xwing_encapsulate(document->public_key);
    if (!encapsulation) co_return std::unexpected(encapsulation.error());
    auto generated = std::make_shared<const EncryptionKeys>(EncryptionKeys{
        .shared_secret = std::move(encapsulation->shared_secret),
        .cipher_text = encapsulation->cipher_text,
        .key_id = document->key_id,
        .not_after = document->not_after});
    const std::lock_guard lock(mutex);
    keys = generated;
    co_return generated;
  }

  // The keys in use, made from a fresh verified attestation when there are none: by one call at a
  // time, whose result (keys or error) the calls that came meanwhile share.
  awaitable<Result<std::shared_ptr<const EncryptionKeys>>> current_keys() {
    const auto executor = co_await asio::this_coro::executor;
    for (;;) {
      std::shared_ptr<Wakeup> wakeup;
      std::uint64_t attempt = 0;
      {
        const std::lock_guard lock(mutex);
        if (keys && keys->usable_at(now_seconds())) co_return keys;
        if (!making_keys) {
          making_keys = true;
          break;
        }
        wakeup = std::make_shared<Wakeup>(executor, 1);
        waiting.push_back(wakeup);
        attempt = attempts_finished;
      }
      // The channel lives on this call's executor: it leaves the list before this call ends,
      // however it ends (a blocking call's io_context goes with it).
      struct Leave {
        ClientState& state;
        const std::shared_ptr<Wakeup>& wakeup;
        ~Leave() {
          const std::lock_guard lock(state.mutex);
          std::erase(state.waiting, wakeup);
        }
      } leave{*this, wakeup};
      co_await wakeup->async_receive(asio::as_tuple(asio::use_awaitable));
      const std::lock_guard lock(mutex);
      if (keys && keys->usable_at(now_seconds())) co_return keys;
      // A cancelled attempt left no error: then this call makes the keys itself.
      if (attempts_finished > attempt && last_attempt_error) co_return std::unexpected(*last_attempt_error);
    }
    // Whatever ends this attempt (keys, error, cancellation) wakes the calls waiting for it.
    std::optional<Error> failure;
    struct Finish {
      ClientState& state;
      const std::optional<Error>& failure;
      ~Finish() {
        const std::lock_guard lock(state.mutex);
        state.making_keys = false;
        ++state.attempts_finished;
        state.last_attempt_error = failure;
        for (const auto& wakeup : state.waiting) (void)wakeup->try_send(boost::system::error_code{});
      }
    } finish{*this, failure};
    auto generated = co_await generate_keys();
    // A cancelled call's failure is its own (its request was cut), not one to share.
    const asio::cancellation_state cancellation = co_await asio::this_coro::cancellation_state;
    if (!generated && cancellation.cancelled() == asio::cancellation_type::none) failure = generated.error();
    co_return generated;
  }

  awaitable<Result<EncryptionKeys>> copy_of_new_keys() {
    auto generated = co_await generate_keys();
    if (!generated) co_return std::unexpected(generated.error());
    co_return **generated;
  }

  // Drops the keys for `key_id` (the gateway no longer knows it), unless already replaced.
  void forget_keys(const crypto::KeyId& key_id) {
    const std::lock_guard lock(mutex);
    if (keys && keys->key_id == key_id) keys.reset();
  }

  // One chat request sealed with the keys in use, its answer decoded into `on_chunk`. A 404
  // unknown_key_id (the enclave key changed) drops the keys, re-attests and retries once.
  awaitable<Status> chat(const json::object& request, const AsyncChunkHandler& on_chunk, const CallOptions& call) {
    const std::string plaintext = json::serialize(request);
    for (int attempt = 0;; ++attempt) {
      auto keys_in_use = co_await current_keys();
      if (!keys_in_use) co_return std::unexpected(keys_in_use.error());
      const EncryptionKeys& k = **keys_in_use;

      const crypto::Nonce nonce = crypto::random_nonce();
      const protocol::SealInput seal{.version = options.protocol_version,
                                     .shared_secret = &k.shared_secret,
                                     .cipher_text = &k.cipher_text,
                                     .key_id = k.key_id,
                                     .nonce = nonce,
                                     .timestamp = now_seconds()};
      http::Request http_request = http::make_request(
          http::Verb::post, base.join(kChatPath), protocol::serialize_envelope(protocol::seal_request(seal, plaintext)));
      http_request.set(http::beast::http::field::authorization, "Bearer " + options.api_key);
      http_request.set(http::beast::http::field::accept, http::kEventStreamContentType);

      auto opened = co_await http.open(base, std::move(http_request), timeouts());
      if (!opened) co_return std::unexpected(transport_error(opened.error()));
      http::ResponseStream& stream = **opened;

      ResponseMeta meta{.status = stream.status()};
      for (const auto& field : stream.header())
        if (is_passthrough_header(field.name_string()))
          meta.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));

      if (meta.status != 200) {
        std::string body;
        while (body.size() <= kMaxJsonResponseBytes) {
          auto bytes = co_await stream.read_some();
          if (!bytes || !*bytes) break;  // an error body cut short still says what we can
          body += **bytes;
        }
        Error error = error_from_http(meta.status, body);
        if (error.code == Errc::unknown_key_id && attempt == 0) {
          forget_keys(k.key_id);
          continue;
        }
        if (call.on_response) call.on_response(meta);
        co_return std::unexpected(std::move(error));
      }
      if (call.on_response) call.on_response(meta);
      const auto content_type = stream.header()[http::beast::http::field::content_type];
      if (!content_type.starts_with(http::kEventStreamContentType)) {
        stream.cancel();
        co_return fail(Errc::upstream_error, "the gateway answered 200 without an event stream");
      }
      co_return co_await decode(stream, ResponseDecoder(options.protocol_version, k.shared_secret, nonce,
                                                       options.max_buffer_size),
                                on_chunk);
    }
  }

  // The answer's events into `on_chunk` until the authenticated done, which ends the call at once.
  // request_timeout bounds the time spent waiting for the gateway since the last authenticated
  // event (handlers' time is not counted): comments (": ping") and events of unknown kinds do not
  // start it again, so a gateway sending only those cannot hold the call.
  awaitable<Status> decode(http::ResponseStream& stream, ResponseDecoder decoder, const AsyncChunkHandler& on_chunk) {
    using Clock = std::chrono::steady_clock;
    http::detail::OperationWatchdog silence(co_await asio::this_coro::executor, options.request_timeout,
                                            [&stream] { stream.cancel(); });
    Clock::duration waited{};  // for the gateway since the last authenticated event
    std::vector<Chunk> chunks;
    while (!decoder.done()) {
      const auto started = Clock::now();
      silence.begin_for(std::chrono::duration_cast<std::chrono::milliseconds>(options.request_timeout - waited));
      auto bytes = co_await stream.read_some();
      silence.end();
      waited += Clock::now() - started;
      if (!bytes) {
        if (silence.expired() || bytes.error().code == Errc::upstream_timeout) co_return std::unexpected(silence_error());
        // A broken connection mid-stream is a stream without its authenticated end.
        co_return fail(Errc::truncated_stream, "the response stream broke before its authenticated end: " +
                                                   bytes.error().message);
      }
      if (!*bytes) co_return decoder.finish();
      const std::uint64_t events_before = decoder.authenticated_events();
      chunks.clear();
      const Status fed = decoder.feed(**bytes, chunks);
      stream.recycle(std::move(**bytes));  // the decoder kept what it needs; the next read refills it
      if (decoder.authenticated_events() != events_before) waited = {};
      for (const Chunk& chunk : chunks) {
        if (auto handled = co_await on_chunk(chunk); !handled) {
          stream.cancel();
          co_return handled;
        }
      }
      if (!fed) {
        stream.cancel();
        co_return fed;
      }
    }
    co_await end_after_done(stream, silence);
    co_return Status{};
  }

  // The answer is complete: the rest of the body (its chunked end) is read only if it comes at
  // once, so the connection can be reused; otherwise the connection is dropped.
  static awaitable<void> end_after_done(http::ResponseStream& stream, http::detail::OperationWatchdog& watchdog) {
    watchdog.begin_for(kEndAfterDoneWait);
    std::size_t after_done = 0;
    while (!stream.finished() && after_done <= kMaxBytesAfterDone) {
      auto bytes = co_await stream.read_some();
      if (!bytes || !*bytes) break;
      after_done += (*bytes)->size();
    }
    watchdog.end();
    if (!stream.finished()) stream.cancel();
  }

  [[nodiscard]] Error silence_error() const {
    return Error{Errc::timeout, "no event from the gateway " + base.origin() + " for " +
                                    std::to_string(options.request_timeout.count()) + " ms (request_timeout)"};
  }
};

}  // namespace detail

namespace {

using detail::ClientState;

// Runs `make()` (an awaitable factory) to completion on a private io_context. Its connections
// come from and go back to the client's pool, which outlives the io_context: consecutive blocking
// calls reuse one keep-alive connection, as the awaitable ones do.
template <class T, class F>
T run_blocking(const std::shared_ptr<ClientState>& state, F make) {
  asio::io_context io;
  std::optional<T> result;
  std::exception_ptr failure;
  asio::co_spawn(io, make(*state), [&](std::exception_ptr e, T value) {
    failure = e;
    if (!e) result.emplace(std::move(value));
  });
  io.run();
  if (failure) std::rethrow_exception(failure);
  return std::move(*result);
}

// Turns an exception escaping a call (Asio throws operation_aborted into a cancelled coroutine)
// into an error value.
template <class T>
Result<T> caught(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const boost::system::system_error& error) {
    if (error.code() == asio::error::operation_aborted) return fail(Errc::transport_error, "request cancelled");
    return fail(Errc::transport_error, error.what());
  } catch (const std::exception& error) {
    return fail(Errc::internal_error, error.what());
  }
}

template <class T, class F>
awaitable<Result<T>> caught_call(F& body) {
  std::exception_ptr failure;
  try {
    auto result = co_await body();
    const asio::cancellation_state state = co_await asio::this_coro::cancellation_state;
    if (state.cancelled() != asio::cancellation_type::none && !result)
      co_return fail(Errc::transport_error, "request cancelled");
    co_return result;
  } catch (...) {
    failure = std::current_exception();
  }
  co_return caught<T>(failure);
}

// Runs one call (`body`, an awaitable factory) as an error value, within total_timeout if set:
// when that passes first the call is cancelled (its connection closed) and fails with timeout.
template <class T, class F>
awaitable<Result<T>> guarded(const ClientState& state, F body) {
  if (!state.options.total_timeout) co_return co_await caught_call<T>(body);
  using asio::experimental::awaitable_operators::operator||;
  asio::steady_timer timer(co_await asio::this_coro::executor, *state.options.total_timeout);
  // caught_call never throws, so the timer can only win by expiring.
  auto raced = co_await (caught_call<T>(body) || timer.async_wait(asio::use_awaitable));
  if (raced.index() == 0) co_return std::move(std::get<0>(raced));
  co_return fail(Errc::timeout, "the call took longer than total_timeout (" +
                                    std::to_string(state.options.total_timeout->count()) + " ms)");
}

awaitable<Result<json::object>> assembled(ClientState& state, json::object request,
                                          CallOptions call) {
  protocol::CompletionAssembler assembler;
  const AsyncChunkHandler collect = [&assembler](const Chunk& chunk) -> awaitable<Status> {
    assembler.add_chunk(chunk.object);
    co_return Status{};
  };
  if (auto done = co_await state.chat(request, collect, call); !done) co_return std::unexpected(done.error());
  co_return assembler.completion();
}


}  // namespace

// --- EncryptionKeys ---------------------------------------------------------------------------

std::string EncryptionKeys::to_json() const {
  json::object object{{"sharedSecret", to_hex(shared_secret.span())},
                      {"cipherText", to_hex(cipher_text)},
                      {"keyId", to_hex(key_id)}};
  if (not_after) object["notAfter"] = *not_after;
  return json::serialize(object);
}

Result<EncryptionKeys> EncryptionKeys::from_json(std::string_view text) {
  boost::system::error_code ec;
  const json::value value = json::parse(text, ec);
  if (ec || !value.is_object()) return fail(Errc::invalid_request, "encryption keys: not a JSON object");
  const json::object& object = value.as_object();
  auto field = [&](std::string_view name) -> Result<std::string_view> {
    const auto* v = object.if_contains(name);
    if (v == nullptr || !v->is_string()) return fail(Errc::invalid_request, "encryption keys: missing " + std::string(name));
    return std::string_view(v->as_string());
  };
  EncryptionKeys keys;
  for (const auto& [name, out] : {std::pair{"sharedSecret", std::span<std::uint8_t>(keys.shared_secret.span())},
                                  std::pair{"cipherText", std::span<std::uint8_t>(keys.cipher_text)},
                                  std::pair{"keyId", std::span<std::uint8_t>(keys.key_id)}}) {
    auto hex = field(name);
    if (!hex) return std::unexpected(hex.error());
    if (auto ok = from_hex_into(*hex, out, name); !ok) return std::unexpected(ok.error());
  }
  if (const auto* not_after = object.if_contains("notAfter")) {
    if (!not_after->is_int64() || not_after->get_int64() < 0)
      return fail(Errc::invalid_request, "encryption keys: notAfter must be a non-negative integer");
    keys.not_after = not_after->get_int64();
  }
  return keys;
}

// --- Completions ------------------------------------------------------------------------------

Result<json::object> Completions::create(const json::object& request, const CallOptions& options) const {
  return run_blocking<Result<json::object>>(state_, [&](ClientState& state) {
    return guarded<json::object>(state, [&]() { return assembled(state, request, options); });
  });
}

Status Completions::create(const json::object& request, const ChunkHandler& on_chunk, const CallOptions& options) const {
  const AsyncChunkHandler handler = [&on_chunk](const Chunk& chunk) -> awaitable<Status> { co_return on_chunk(chunk); };
  return run_blocking<Status>(state_, [&](ClientState& state) {
    return guarded<void>(state, [&]() { return state.chat(request, handler, options); });
  });
}

awaitable<Result<json::object>> Completions::async_create(json::object request, CallOptions options) const {
  auto state = state_;
  co_return co_await guarded<json::object>(*state, [&]() { return assembled(*state, request, options); });
}

awaitable<Status> Completions::async_create(json::object request, AsyncChunkHandler on_chunk,
                                            CallOptions options) const {
  auto state = state_;
  co_return co_await guarded<void>(*state, [&]() { return state->chat(request, on_chunk, options); });
}

// --- Client -----------------------------------------------------------------------------------

Client::Client(std::shared_ptr<detail::ClientState> state) : state_(std::move(state)) {
  chat.completions.state_ = state_;
}

const ClientOptions& Client::options() const noexcept { return state_->options; }

Result<protocol::AttestationDocument> Client::attest() const {
  return run_blocking<Result<protocol::AttestationDocument>>(state_, [](ClientState& state) {
    return guarded<protocol::AttestationDocument>(state, [&]() { return state.attest(); });
  });
}

awaitable<Result<protocol::AttestationDocument>> Client::async_attest() const {
  auto state = state_;
  co_return co_await guarded<protocol::AttestationDocument>(*state, [&]() { return state->attest(); });
}

Result<EncryptionKeys> Client::generate_encryption_keys() const {
  return run_blocking<Result<EncryptionKeys>>(state_, [](ClientState& state) {
    return guarded<EncryptionKeys>(state, [&]() { return state.copy_of_new_keys(); });
  });
}

awaitable<Result<EncryptionKeys>> Client::async_generate_encryption_keys() const {
  auto state = state_;
  co_return co_await guarded<EncryptionKeys>(*state, [&]() { return state->copy_of_new_keys(); });
}

std::optional<EncryptionKeys> Client::encryption_keys() const {
  const std::lock_guard lock(state_->mutex);
  if (!state_->keys) return std::nullopt;
  return *state_->keys;
}

Result<json::object> Client::models() const {
  return run_blocking<Result<json::object>>(state_, [](ClientState& state) {
    return guarded<json::object>(state, [&]() { return state.models(); });
  });
}

awaitable<Result<json::object>> Client::async_models() const {
  auto state = state_;
  co_return co_await guarded<json::object>(*state, [&]() { return state->models(); });
}

namespace {
Result<std::shared_ptr<ClientState>> make_state(ClientOptions options, bool need_api_key) {
  if (auto ok = validate(options, need_api_key); !ok) return std::unexpected(ok.error());
  auto base = http::parse_url(options.base_url);
  if (!base) return fail(Errc::invalid_request, "base_url: " + base.error().message);
  auto state = std::make_shared<ClientState>(options.max_idle_connections, options.ca_file);
  state->base = std::move(*base);
  if (options.encryption_keys) state->keys = std::make_shared<const EncryptionKeys>(std::move(*options.encryption_keys));
  options.encryption_keys.reset();
  state->options = std::move(options);
  return state;
}
}  // namespace

Result<Client> create_client(ClientOptions options) {
  auto state = make_state(std::move(options), true);
  if (!state) return std::unexpected(state.error());
  return Client(std::move(*state));
}

Result<Client> detail::keyless_client(const ClientOptions& options) {
  ClientOptions copy = options;
  copy.encryption_keys.reset();
  auto state = make_state(std::move(copy), false);
  if (!state) return std::unexpected(state.error());
  return Client(std::move(*state));
}

Result<EncryptionKeys> generate_encryption_keys(const ClientOptions& options) {
  auto client = detail::keyless_client(options);
  if (!client) return std::unexpected(client.error());
  return client->generate_encryption_keys();
}

Result<protocol::AttestationDocument> attest(const ClientOptions& options) {
  auto client = detail::keyless_client(options);
  if (!client) return std::unexpected(client.error());
  return client->attest();
}

}  // namespace rvenc::client
