// The rvenc client SDK: end-to-end encrypted chat completions through an rvenc gateway, the C++
// counterpart of the TypeScript SDK's createRvencClient / generateEncryptionKeys /
// client.chat.completions.create; client.completions and client.embeddings carry the other
// endpoints over the same encrypted path (docs/endpoints.md).
//
//   #include "rvenc/client/settings.hpp"
//   // Next to a stack from `rvenc up`, resolve_settings({}) reads its gateway URL, API key and
//   // platform key from ./.rvenc/stack.json: that stack's enclave is *simulated* and is trusted
//   // only through attestation.simulated_platform_key (never by default). For a gateway elsewhere,
//   // fill ClientOptions yourself ({.api_key = "sk_live_...", .base_url = "https://..."}); hardware
//   // enclaves (TDX, SEV-SNP) are verified against the vendors' pinned roots with no key to set.
//   auto options = rvenc::client::resolve_settings({});
//   if (!options) { std::cerr << options.error().to_string() << "\n"; return 2; }
//   auto client = rvenc::client::create_client(*options);   // Result<Client>
//   if (!client) { std::cerr << client.error().to_string() << "\n"; return 2; }
//   auto completion = client->chat.completions.create(
//       {{"model", "rvenc-demo"},
//        {"messages", boost::json::array{boost::json::object{{"role", "user"}, {"content", "Hello"}}}}});
//   if (completion) std::cout << completion->at("choices").at(0).at("message").at("content") << "\n";
//
// Design: a Client is a cheap handle on shared state (options, the current encryption keys, an
// http::HttpClient connection pool), safe to use from many threads and coroutines at once. Every call
// exists twice: a blocking one (on an io_context of its own, for applications and the CLI) and an
// awaitable one that runs on the caller's executor (for servers such as the local OpenAI proxy:
// many concurrent requests on one io_context); both reuse the pooled keep-alive connections.
// Trust comes first: encryption keys are only ever made for a public key whose attestation
// verified against the policy and a fresh challenge. Calls that need keys while one is making
// them wait for its result (keys or error) instead of each attesting.
// A streaming call returns at the authenticated end of the answer (done), without waiting for the
// gateway to close anything: what follows done is read only briefly, for keep-alive.
// Several enclaves (PROTOCOL.md section 7): keys are kept per model, one set per model with the
// verified keys of every replica serving it (attestation `&model=M&all=1`; a gateway of older
// releases answers one document, which then is the whole set). Each replica is verified once and
// its encapsulation reused until its notAfter; a refresh keeps the keys of replicas it already
// trusts. Every request goes to the replica with the fewest of this client's requests in flight
// (ties at random), so one client with many concurrent requests spreads over the replicas.
// When the request fails before any answer in a way a replica explains (404 unknown_key_id, 503
// enclave_busy, 503 enclave_unavailable, or no HTTP status at all: the connection failed) the
// client re-attests the model and sends the request once more, sealed anew (new nonce), to
// another replica when there is one; after the stream has begun nothing is ever re-sent. Keys
// are never used within kKeyExpiryMargin of their notAfter: the next call makes new ones first.
//
// Errors are rvenc::Error values: HTTP errors of the gateway keep their status and code
// (Error::http_status); transport failures are transport_error (cannot connect, connection
// reset) or timeout (silence longer than request_timeout, or a call longer than total_timeout);
// stream failures are tampered_stream,
// truncated_stream, event_too_large, upstream_error (the gateway's unauthenticated error event)
// or the code of the enclave's authenticated error event; attestation_failed when trust fails.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "rvenc/attestation/verifier.hpp"
#include "rvenc/client/response.hpp"
#include "rvenc/protocol/shaping.hpp"
#include "rvenc/common/error.hpp"
#include "rvenc/crypto/crypto.hpp"
#include "rvenc/http/awaitable.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::client {

inline constexpr std::string_view kDefaultBaseUrl = "http://127.0.0.1:8400";
inline constexpr std::chrono::milliseconds kDefaultRequestTimeout{30'000};
inline constexpr std::size_t kDefaultMaxBufferSize = protocol::kDefaultMaxEventBytes;  // 10 MiB
inline constexpr std::size_t kDefaultMaxIdleConnections = 256;  // as the other hops' pools

// Keys are not used from this long before their notAfter on (clock skew, a request in flight).
inline constexpr std::chrono::seconds kKeyExpiryMargin{60};

// When keys to an enclave key with this notAfter, verified at `verified_at`, are replaced:
// not_after − min(kKeyExpiryMargin, half the life it had left). A rotating enclave (rvenc enclave
// --key-rotation-hours) makes its next key at notAfter − grace, and its grace is at least the
// period, so a refresh at this time finds the new key whatever the period (docs/key-rotation.md).
[[nodiscard]] std::int64_t refresh_time(std::int64_t not_after, std::int64_t verified_at) noexcept;

// The SDK's "encryption keys": an X-Wing encapsulation to the enclave key `key_id`. May be
// generated once (generate_encryption_keys) and reused for many requests, until `not_after`.
struct EncryptionKeys {
  crypto::SharedSecret shared_secret;
  crypto::XWingCipherText cipher_text{};
  crypto::KeyId key_id{};
  // The enclave key's notAfter (seconds since the epoch) from the verified attestation; nullopt
  // for keys made elsewhere without it (then used until the gateway no longer knows them).
  std::optional<std::int64_t> not_after;
  // When to make new keys (seconds since the epoch), set from the verified attestation:
  // refresh_time(not_after, verified at). nullopt (keys of older releases, or made elsewhere):
  // not_after − kKeyExpiryMargin.
  std::optional<std::int64_t> refresh_at;
  // The models the enclave said it serves (its attestation's informational "models"); empty when
  // unknown (older enclaves, keys made elsewhere): then the keys are tried for any model.
  std::vector<std::string> models;

  // False from refresh_at (or kKeyExpiryMargin before not_after) on (`now` in epoch seconds):
  // make new keys then.
  [[nodiscard]] bool usable_at(std::int64_t now) const noexcept {
    if (not_after && now >= *not_after) return false;
    if (refresh_at) return now < *refresh_at;
    return !not_after || now < *not_after - kKeyExpiryMargin.count();
  }

  // True when these keys may be used for requests to `model` (listed, or no list known).
  [[nodiscard]] bool serves(std::string_view model) const;

  // {"sharedSecret": hex, "cipherText": hex, "keyId": hex, "notAfter": int when known,
  //  "refreshAt": int when known, "models": [..] when known}
  // (contains the secret: handle with care).
  [[nodiscard]] std::string to_json() const;
  // invalid_request naming the missing or malformed field (never echoing values); "notAfter" is
  // and "models" are optional (JSON of older releases has none).
  [[nodiscard]] static Result<EncryptionKeys> from_json(std::string_view json);
};

struct ClientOptions {
  std::string api_key;  // required by create_client: "sk_live_..." or "sk_test_..."
  std::string base_url = std::string(kDefaultBaseUrl);  // the gateway, http:// or https://
  // For an https:// base_url: verify the gateway's certificate against this PEM bundle (a private
  // CA) instead of the system trust store. Verification cannot be turned off; a failed handshake
  // is Errc::tls_error saying why (unknown issuer, host-name mismatch, expired, not TLS).
  std::string ca_file;
  // Pre-generated keys; generated from a verified attestation on first use otherwise. Keys whose
  // not_after is near (EncryptionKeys::usable_at) are replaced by new ones before a request.
  std::optional<EncryptionKeys> encryption_keys;
  // More pre-generated keys, of other replicas or models (each used for the models it lists, or
  // for any model when it lists none), e.g. a set saved from encryption_keys_for().
  std::vector<EncryptionKeys> replica_keys;
  // Longest wait for the connection, the response head, or the next event of a stream that
  // advances it (a chunk, the end): comments such as ": ping" and events of unknown kinds do not
  // count, so a gateway sending only those times out. Not a bound on a whole streaming answer,
  // which may run long while tokens keep coming (see total_timeout).
  std::chrono::milliseconds request_timeout = kDefaultRequestTimeout;
  // Longest time one call may take as a whole (attestation when it needs keys, connect, the whole
  // answer up to its end); none by default. Error timeout naming total_timeout when exceeded.
  std::optional<std::chrono::milliseconds> total_timeout;
  // Largest single event of the response stream accepted (event_too_large beyond).
  std::size_t max_buffer_size = kDefaultMaxBufferSize;
  // Keep-alive connections to the gateway kept open between calls; more concurrent calls than
  // this open a connection each and close it after. Raise it to the calls you run at once.
  std::size_t max_idle_connections = kDefaultMaxIdleConnections;
  // Version 3 by default; 2 only while enclaves are being upgraded (they need --allow-v2); 1 only
  // for servers that speak nothing else (see PROTOCOL.md). Never changed by the client itself.
  protocol::Version protocol_version = protocol::Version::v3;
  // Stream shaping against traffic analysis (docs/traffic-shaping.md), asked for inside the
  // encrypted request ("rvenc_shaping"; a request that has that member keeps its own); nullopt:
  // the enclave's default. Fillers are always dropped and split chunks joined, whoever chose.
  std::optional<protocol::ShapingMode> shaping;
  // Which enclaves to trust. The default trusts hardware providers only, never "simulated".
  protocol::AttestationPolicy attestation;
  // Hardware evidence (sev-snp, tdx) is verified offline with the collateral the document carries
  // (rvenc/client/hardware.hpp), against this measurement policy (docs/attestation.md). The
  // default accepts any measurement (`rvenc attest` prints it to pin), refuses debug TEEs and
  // wants TDX TCB UpToDate; keys are used until min(notAfter, the evidence's valid_until).
  attestation::Policy hardware_policy;
  // Roots the evidence must chain to INSTEAD of the vendors' roots pinned in the library: test
  // roots, set on purpose only (never a default, never read from the environment).
  std::optional<attestation::TrustAnchors> trust_anchors;
};

// Options for one call.
struct CallOptions {
  // Called once with the head of the gateway's answer that the call acts on (success or HTTP
  // error; not the 404 unknown_key_id that triggers a retry), before any chunk.
  std::function<void(const ResponseMeta&)> on_response;
};

// Handler for each decrypted chunk of a streaming call, in order. Returning an error stops the
// call (the gateway connection is closed so the enclave stops generating) with that error.
using ChunkHandler = std::function<Status(const Chunk&)>;
using AsyncChunkHandler = std::function<http::awaitable<Status>(const Chunk&)>;

class Client;
namespace detail {
struct ClientState;
// A client for the calls that need no API key (attestation, keys); options otherwise validated.
[[nodiscard]] Result<Client> keyless_client(const ClientOptions& options);
}  // namespace detail

// client.chat.completions
class Completions {
 public:
  // Non-streaming: the assembled chat.completion object (content and reasoning_content
  // concatenated, tool_calls merged by index, last finish_reason and usage).
  [[nodiscard]] Result<boost::json::object> create(const boost::json::object& request,
                                                   const CallOptions& options = {}) const;
  // Streaming: `on_chunk` for each chunk as it arrives; ok after the authenticated end of stream.
  [[nodiscard]] Status create(const boost::json::object& request, const ChunkHandler& on_chunk,
                              const CallOptions& options = {}) const;

  // The same on the calling coroutine's executor. They honour Asio's terminal cancellation (e.g.
  // co_spawn bound to a cancellation_signal): the gateway connection is closed and the call
  // returns transport_error "request cancelled".
  [[nodiscard]] http::awaitable<Result<boost::json::object>> async_create(boost::json::object request,
                                                                          CallOptions options = {}) const;
  [[nodiscard]] http::awaitable<Status> async_create(boost::json::object request, AsyncChunkHandler on_chunk,
                                                     CallOptions options = {}) const;

 private:
  friend class Client;
  std::shared_ptr<detail::ClientState> state_;
};

struct Chat {
  Completions completions;
};

// client.responses: the OpenAI Responses API (docs/responses.md). The request goes the chat route,
// encrypted, with "rvenc_endpoint": "responses" added inside the ciphertext; the enclave answers
// with Responses streaming events (translated from chat completions, or from an upstream serving
// /v1/responses). The enclave stores nothing: previous_response_id is refused there (rvenc proxy
// keeps conversations locally).
class Responses {
 public:
  // Non-streaming: the response object of the terminal event (response.completed, or
  // response.incomplete when max_output_tokens cut it); an engine failure is its error.
  [[nodiscard]] Result<boost::json::object> create(const boost::json::object& request,
                                                   const CallOptions& options = {}) const;
  // Streaming: `on_event` for each Responses event (Chunk::object) as it arrives.
  [[nodiscard]] Status create(const boost::json::object& request, const ChunkHandler& on_event,
                              const CallOptions& options = {}) const;
  [[nodiscard]] http::awaitable<Result<boost::json::object>> async_create(boost::json::object request,
                                                                          CallOptions options = {}) const;
  [[nodiscard]] http::awaitable<Status> async_create(boost::json::object request, AsyncChunkHandler on_event,
                                                     CallOptions options = {}) const;

 private:
  friend class Client;
  std::shared_ptr<detail::ClientState> state_;
};

// client.completions: legacy text completions ("rvenc_endpoint": "completions", docs/endpoints.md).
class TextCompletions {
 public:
  // Non-streaming: the assembled text_completion object (text concatenated per choice, last
  // finish_reason and usage).
  [[nodiscard]] Result<boost::json::object> create(const boost::json::object& request,
                                                   const CallOptions& options = {}) const;
  // Streaming: `on_chunk` for each text_completion chunk; ok after the authenticated end of stream.
  [[nodiscard]] Status create(const boost::json::object& request, const ChunkHandler& on_chunk,
                              const CallOptions& options = {}) const;
  [[nodiscard]] http::awaitable<Result<boost::json::object>> async_create(boost::json::object request,
                                                                          CallOptions options = {}) const;
  [[nodiscard]] http::awaitable<Status> async_create(boost::json::object request, AsyncChunkHandler on_chunk,
                                                     CallOptions options = {}) const;

 private:
  friend class Client;
  std::shared_ptr<detail::ClientState> state_;
};

// client.embeddings ("rvenc_endpoint": "embeddings"): the OpenAI `list` object, the enclave's one
// chunk (one data event, or records joined: docs/endpoints.md; upstream_error for none or several).
class Embeddings {
 public:
  [[nodiscard]] Result<boost::json::object> create(const boost::json::object& request,
                                                   const CallOptions& options = {}) const;
  [[nodiscard]] http::awaitable<Result<boost::json::object>> async_create(boost::json::object request,
                                                                          CallOptions options = {}) const;

 private:
  friend class Client;
  std::shared_ptr<detail::ClientState> state_;
};

class Client {
 public:
  Chat chat;
  TextCompletions completions;
  Embeddings embeddings;
  Responses responses;

  [[nodiscard]] const ClientOptions& options() const noexcept;

  // Fetches the attestation with a fresh random challenge and verifies it against the policy
  // (attestation_failed when it does not verify); returns the verified document. With `model`,
  // of an enclave serving it (`&model=`; 404 model_not_found from a gateway where none does).
  [[nodiscard]] Result<protocol::AttestationDocument> attest(std::string_view model = {}) const;
  [[nodiscard]] http::awaitable<Result<protocol::AttestationDocument>> async_attest(std::string model = {}) const;

  // Verified attestation, then a fresh encapsulation to its key. The new keys also become the
  // keys this client uses from now on (for `model`, or for any model when it is empty).
  [[nodiscard]] Result<EncryptionKeys> generate_encryption_keys(std::string_view model = {}) const;
  [[nodiscard]] http::awaitable<Result<EncryptionKeys>> async_generate_encryption_keys(std::string model = {}) const;

  // Keys for every healthy replica serving `model` (`&all=1`, each document verified; keys of
  // replicas already trusted are kept unless `fresh`, then every one is a new encapsulation, e.g.
  // a rotation). They become the set this client spreads `model`'s requests over.
  [[nodiscard]] Result<std::vector<EncryptionKeys>> generate_replica_keys(std::string_view model, bool fresh = false) const;
  [[nodiscard]] http::awaitable<Result<std::vector<EncryptionKeys>>> async_generate_replica_keys(std::string model,
                                                                                                 bool fresh = false) const;

  // A copy of the keys this client uses now (nullopt before any are made): the ones made or
  // replaced last. They change on generate_encryption_keys() and when the gateway no longer knows
  // them (re-attestation), so a caller that saves keys reads them here after a call.
  [[nodiscard]] std::optional<EncryptionKeys> encryption_keys() const;
  // The set of keys this client uses for `model` now (empty before any are made).
  [[nodiscard]] std::vector<EncryptionKeys> encryption_keys_for(std::string_view model) const;

  // GET {base_url}/rvenc/models: the OpenAI model list {"object":"list","data":[{"id":...}]}.
  [[nodiscard]] Result<boost::json::object> models() const;
  [[nodiscard]] http::awaitable<Result<boost::json::object>> async_models() const;

 private:
  friend Result<Client> create_client(ClientOptions options);
  friend Result<Client> detail::keyless_client(const ClientOptions& options);
  explicit Client(std::shared_ptr<detail::ClientState> state);
  std::shared_ptr<detail::ClientState> state_;
};

// Validates the options (api_key present and well-formed, base_url an http:// or https:// URL, positive
// timeouts and buffer size, protocol 1, 2 or 3): invalid_request naming the option otherwise.
[[nodiscard]] Result<Client> create_client(ClientOptions options);

// invalid_request when `url` cannot be a gateway's: not an http(s) URL, or ending in /v1 like an
// OpenAI base URL (the proxy's); the message names the URL to use instead.
[[nodiscard]] Status validate_gateway_url(std::string_view url);

// Keys without a client (no API key needed): verified attestation from options.base_url under
// options.attestation (of an enclave serving `model` when given), then a fresh encapsulation.
[[nodiscard]] Result<EncryptionKeys> generate_encryption_keys(const ClientOptions& options, std::string_view model = {});
// The verified attestation of options.base_url's enclave (no API key needed), as Client::attest().
[[nodiscard]] Result<protocol::AttestationDocument> attest(const ClientOptions& options, std::string_view model = {});
// Whether options.base_url answers like an rvenc gateway (GET /rvenc/models, no API key): not_found
// saying which URL to use when something else answers (the proxy, an OpenAI server), the transport
// or TLS error when nothing does. For tools that take a gateway URL and run on (rvenc proxy).
[[nodiscard]] Status check_gateway(const ClientOptions& options);

}  // namespace rvenc::client
