#include "rvenc/enclave/service.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <fstream>
#include <sstream>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include "rvenc/common/auth.hpp"
#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/enclave/endpoints.hpp"
#include "rvenc/protocol/attestation.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/sse.hpp"

namespace rvenc::enclave {

namespace json = boost::json;
namespace asio = boost::asio;
using field = boost::beast::http::field;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kMaxRequestIdLength = 64;
constexpr std::size_t kGeneratedRequestIdBytes = 8;

std::string_view header_value(const http::Request& request, std::string_view name) {
  const auto it = request.find(boost::beast::string_view(name.data(), name.size()));
  if (it == request.end()) return {};
  return {it->value().data(), it->value().size()};
}

// A header value that is safe to log: a short token of letters, digits and -_.: (else nullopt).
std::optional<std::string> log_token(std::string_view value) {
  const bool usable = !value.empty() && value.size() <= kMaxRequestIdLength &&
                      std::all_of(value.begin(), value.end(), [](char c) {
                        return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_' ||
                               c == '.' || c == ':';
                      });
  return usable ? std::optional<std::string>(value) : std::nullopt;
}

// The caller's X-Request-Id when it is a short printable token, else a fresh one.
std::string request_id(const http::Request& request) {
  if (auto given = log_token(header_value(request, kRequestIdHeader))) return *given;
  return to_hex(crypto::random_array<kGeneratedRequestIdBytes>());
}

// The tenant whose share of the replay cache a request takes: the X-Rvenc-Tenant the gateway adds
// (its API key id) when the gateway proves itself with its token, else the one anonymous tenant ""
// (without a token anyone may claim any tenant, or a fresh one per request).
std::string replay_tenant(const http::Request& request, bool gateway_authenticated) {
  if (!gateway_authenticated) return {};
  return log_token(header_value(request, kTenantHeader)).value_or(std::string());
}

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// The counts the gateway bills (PROTOCOL.md section 4): `final` false for the provisional one at
// the start of a stream, true for the one after `done` (and in a rvenc-mux trailer).
std::string usage_json(const protocol::Usage& usage, bool final) {
  return json::serialize(json::object{{"prompt_tokens", usage.prompt_tokens},
                                      {"completion_tokens", usage.completion_tokens},
                                      {"final", final}});
}

std::string usage_event(const protocol::Usage& usage, bool final) {
  return protocol::format_event("usage", usage_json(usage, final));
}

// A request counted in `count` (a stream slot, a place in the evidence queue) until it ends.
struct CountedIn {
  std::atomic<std::size_t>& count;
  ~CountedIn() { --count; }
};

// A chat stream's events as the enclave writes them (PROTOCOL.md section 4): plain opening and
// closing usage, sealed data, error and done events; counted for the log line.
class ChatEvents {
 public:
  ChatEvents(protocol::ResponseSealer sealer, Clock::time_point started)
      : sealer_(std::move(sealer)), started_(started) {}

  // What opens every stream, in its first write (with the head, before the engine is called):
  // version 3's response salt, then the provisional usage (the prompt, before any token), so that
  // a client cutting the stream still pays for its prompt.
  [[nodiscard]] std::string opening(const protocol::Usage& provisional) {
    std::string events = sealer_.init_event() + usage_event(provisional, false);
    bytes_out_ += events.size();
    return events;
  }
  // One sealed event; the plaintext is wiped.
  [[nodiscard]] std::string seal(protocol::EventKind kind, std::string plaintext) {
    std::string event = sealer_.seal_event(kind, plaintext);
    crypto::secure_wipe(plaintext.data(), plaintext.size());
    bytes_out_ += event.size();
    ++events_;
    if (!first_event_ms_) first_event_ms_ = ms_since(started_);
    return event;
  }
  // The closing events, for one write: the engine's error if any, done, the final usage.
  [[nodiscard]] std::string closing(const EngineOutcome& outcome) {
    std::string events;
    if (outcome.error) events = seal(protocol::EventKind::error, openai_error_body(*outcome.error));
    events += seal(protocol::EventKind::done, "[DONE]");
    const std::string usage = usage_event(outcome.usage, true);
    bytes_out_ += usage.size();
    events += usage;
    return events;
  }

  [[nodiscard]] std::size_t bytes_out() const { return bytes_out_; }
  [[nodiscard]] std::size_t events() const { return events_; }
  [[nodiscard]] double first_event_ms() const { return first_event_ms_.value_or(0.0); }

 private:
  protocol::ResponseSealer sealer_;
  Clock::time_point started_;
  std::size_t bytes_out_ = 0;
  std::size_t events_ = 0;
  std::optional<double> first_event_ms_;
};

// The one log line of a chat request: nothing that came inside the ciphertext (model, engine,
// content): docs/threat-model.md.
void log_chat(const std::string& id, const std::string& tenant, protocol::Version version, std::size_t body_bytes,
              const ChatEvents& events, const EngineOutcome& outcome, double open_ms, Clock::time_point started) {
  spdlog::info("chat {} tenant={} v{} {} bytes in, {} bytes out, {} events, tokens {}+{}, "
               "open {:.1f} ms, first event {:.1f} ms, total {:.1f} ms{}{}",
               id, tenant, static_cast<int>(version), body_bytes, events.bytes_out(), events.events(),
               outcome.usage.prompt_tokens, outcome.usage.completion_tokens, open_ms, events.first_event_ms(),
               ms_since(started), outcome.error ? ", ended with " : "",
               outcome.error ? std::string(code_name(outcome.error->code)) : std::string());
}

}  // namespace

Result<crypto::Sha256Digest> load_gateway_token_hash(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(Errc::invalid_request, "cannot read the gateway token file " + path.string());
  std::ostringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  const auto first = token.find_first_not_of(" \t\r\n");
  const auto last = token.find_last_not_of(" \t\r\n");
  std::string trimmed = first == std::string::npos ? std::string() : token.substr(first, last - first + 1);
  crypto::secure_wipe(token.data(), token.size());
  if (trimmed.empty()) return fail(Errc::invalid_request, "the gateway token file " + path.string() + " is empty");
  const auto digest = crypto::sha256(crypto::as_bytes(trimmed));
  crypto::secure_wipe(trimmed.data(), trimmed.size());
  return digest;
}

struct EnclaveService::Accepted {
  protocol::Version version = protocol::Version::v2;
  crypto::Nonce nonce{};
  crypto::SharedSecret shared_secret;
  crypto::Secret<32> response_secret;  // version 3, from the request's own HKDF-Extract
  protocol::ChatRequest chat;  // the request of any endpoint (chat.endpoint)
  const EndpointRoute* route = nullptr;
  protocol::Shaping shaping;  // chat completions only; other endpoints are never shaped
  std::shared_ptr<Engine> engine;
};

EnclaveService::EnclaveService(ServiceOptions options, std::shared_ptr<EnclaveKey> key,
                               std::shared_ptr<AttestationProvider> attestation,
                               std::map<std::string, std::shared_ptr<Engine>> engines)
    : options_(std::move(options)),
      keys_(std::move(key), options_.key_may_have_been_used, options_.rotation,
            options_.clock ? options_.clock() : unix_now()),
      attestation_(std::move(attestation)),
      engines_(std::move(engines)),
      replay_(options_.replay_cache_entries, options_.replay_tenant_share),
      started_at_(0) {
  started_at_ = now();
}

EnclaveService::~EnclaveService() { blocking_pool_.join(); }

std::int64_t EnclaveService::now() const {
  if (options_.clock) return options_.clock();
  return unix_now();
}

http::Router EnclaveService::router() {
  http::Router router;
  router.get("/rvenc/attestation", [this](http::Request& r, http::ResponseWriter& w) { return attestation(r, w); });
  router.get("/rvenc/models", [this](http::Request& r, http::ResponseWriter& w) { return models(r, w); });
  router.get("/healthz", [this](http::Request& r, http::ResponseWriter& w) { return healthz(r, w); });
  router.post("/rvenc/chat/completions", [this](http::Request& r, http::ResponseWriter& w) { return chat(r, w); });
  return router;
}

// --- GET /rvenc/attestation --------------------------------------------------------------------

protocol::AttestationDocument EnclaveService::attestation_document(const EnclaveKey& key,
                                                                   const protocol::Challenge& challenge,
                                                                   std::int64_t now_s) const {
  protocol::AttestationDocument doc;
  doc.key_id = key.key_id();
  doc.public_key = key.public_key();
  doc.not_after = key.not_after();
  doc.provider = std::string(attestation_->name());
  doc.binding = protocol::kCurrentBinding;  // covers keyId and notAfter
  doc.report_data = protocol::expected_report_data(doc, challenge);
  const auto measurement = attestation_->measurement();
  doc.measurement.assign(measurement.begin(), measurement.end());
  doc.models = model_names();
  if (const auto limit = capacity()) doc.capacity = static_cast<std::int64_t>(*limit);
  doc.previous_keys = keys_.previous(now_s);
  return doc;
}

http::awaitable<void> EnclaveService::attestation(http::Request& request, http::ResponseWriter& writer) {
  auto challenge = protocol::challenge_from_query(http::target_query(request));
  if (!challenge) {
    co_await writer.send(http::error_response(request, challenge.error()));
    co_return;
  }

  const std::int64_t now_s = now();
  keys_.maintain(now_s);
  const auto key = keys_.current().key;
  if (key->expired(now_s)) {
    spdlog::error("attestation refused: the enclave key {} expired at {}; restart the enclave to make a new key",
                  to_hex(key->key_id()), key->not_after());
    co_await writer.send(http::error_response(
        request, Error{Errc::enclave_unavailable, "the enclave key has expired; the enclave must be restarted"}));
    co_return;
  }

  protocol::AttestationDocument doc = attestation_document(*key, *challenge, now_s);

  // A flood of attestation requests must not queue without bound behind a slow hardware report.
  if (evidence_queued_.fetch_add(1) >= options_.max_attestation_queue) {
    --evidence_queued_;
    auto response = http::error_response(
        request, Error{Errc::overloaded, "too many attestation requests are waiting for evidence, retry later"});
    response.set(field::retry_after, "1");
    co_await writer.send(std::move(response));
    co_return;
  }
  const CountedIn dequeue{evidence_queued_};
  const auto report_data = doc.report_data;
  auto evidence = co_await asio::co_spawn(
      blocking_pool_,
      [this, report_data]() -> http::awaitable<Result<std::vector<std::uint8_t>>> {
        co_return attestation_->evidence(report_data);
      },
      asio::use_awaitable);
  if (!evidence) {
    spdlog::error("attestation evidence failed: {}", evidence.error().to_string());
    co_await writer.send(
        http::error_response(request, Error{Errc::internal_error, "the attestation evidence is unavailable"}));
    co_return;
  }
  doc.evidence = std::move(*evidence);
  doc.collateral = co_await asio::co_spawn(
      blocking_pool_, [this]() -> http::awaitable<protocol::CollateralFiles> { co_return attestation_->collateral(); },
      asio::use_awaitable);
  auto response = http::json_response(200, protocol::serialize_attestation(doc));
  response.set(field::cache_control, "no-store");
  response.keep_alive(request.keep_alive());
  co_await writer.send(std::move(response));
}

// --- GET /rvenc/models, /healthz -----------------------------------------------------------------

http::awaitable<void> EnclaveService::models(http::Request& request, http::ResponseWriter& writer) {
  json::array data;
  for (const auto& [name, engine] : engines_)
    data.push_back(json::object{{"id", name}, {"object", "model"}, {"created", started_at_}, {"owned_by", "rvenc"}});
  auto response = http::json_response(200, json::serialize(json::object{{"object", "list"}, {"data", std::move(data)}}));
  response.keep_alive(request.keep_alive());
  co_await writer.send(std::move(response));
}

std::vector<std::string> EnclaveService::model_names() const {
  std::vector<std::string> names;
  for (const auto& [name, engine] : engines_) names.push_back(name);
  return names;  // std::map: sorted
}

std::optional<std::size_t> EnclaveService::capacity() const noexcept {
  if (options_.max_streams == 0) return std::nullopt;
  return options_.max_streams;
}

bool EnclaveService::take_stream_slot() {
  const std::size_t before = streams_.fetch_add(1);
  if (options_.max_streams == 0 || before < options_.max_streams) return true;
  --streams_;
  return false;
}

// What a gateway needs between attestations (no hardware report): the keyId, the protocol versions
// allowed (a gateway sends version 1, which has no keyId, only to the one enclave allowing it) and
// the load.
http::awaitable<void> EnclaveService::healthz(http::Request& request, http::ResponseWriter& writer) {
  json::array versions;
  if (options_.allow_v1) versions.push_back(1);
  if (options_.allow_v2) versions.push_back(2);
  versions.push_back(3);
  const auto limit = capacity();
  keys_.maintain(now());
  auto response = http::json_response(
      200, json::serialize(json::object{{"status", "ok"},
                                        {"keyId", to_hex(keys_.current().key->key_id())},
                                        {"versions", std::move(versions)},
                                        {"inFlight", in_flight()},
                                        {"capacity", limit ? json::value(*limit) : json::value(nullptr)},
                                        {"keyRotations", keys_.rotations()}}));
  response.keep_alive(request.keep_alive());
  co_await writer.send(std::move(response));
}

// --- POST /rvenc/chat/completions --------------------------------------------------------------

Status EnclaveService::check_gateway_token(const http::Request& request) const {
  if (!options_.gateway_token_hash) return {};
  const std::string_view authorization = header_value(request, "Authorization");
  const std::string_view token = bearer_token(authorization).value_or(std::string_view{});
  const auto presented = crypto::sha256(crypto::as_bytes(token));
  if (token.empty() || !crypto::constant_time_equal(presented, *options_.gateway_token_hash))
    return fail(Errc::invalid_api_key, "the gateway token is missing or wrong");
  return {};
}

Result<HeldKey> EnclaveService::check_version(const protocol::RequestEnvelope& envelope) const {
  using protocol::Version;
  if (envelope.version == Version::v1 && !options_.allow_v1)
    return fail(Errc::unsupported_version,
                "protocol version 1 is disabled on this enclave (it lets the path forge replies); use version 3");
  if (envelope.version == Version::v2 && !options_.allow_v2)
    return fail(Errc::unsupported_version,
                "protocol version 2 is disabled on this enclave (a replay it cannot see would reuse a keystream); "
                "use version 3");
  const std::int64_t now_s = now();
  if (!protocol::has_key_id(envelope.version)) return keys_.current();
  HeldKey held = keys_.find(envelope.key_id, now_s);
  if (!held.key)
    return fail(Errc::unknown_key_id,
                "keyId is not one of this enclave's keys (or it was retired after a rotation); fetch the attestation "
                "again");
  if (auto ok = check_timestamp(envelope.timestamp, now_s); !ok) return std::unexpected(ok.error());
  // The replay cache starts empty: a request sealed before this process started may have been
  // answered by its predecessor with the same key (a restart must not reopen the 600 s window).
  if (envelope.timestamp < started_at_)
    return fail(Errc::replayed_request,
                "the request was sealed before this enclave started, so it cannot be checked against replays; "
                "seal it again");
  // Version 2's answer depends only on the request: a predecessor holding this key may have accepted
  // any timestamp up to its last second + the allowed skew, so until then a v2 request could be a
  // replay answered under the same keystream (version 3 answers it under a fresh salt). A key made
  // at this start has no predecessor.
  if (envelope.version == Version::v2 && held.may_have_been_used &&
      envelope.timestamp <= started_at_ + kMaxClockSkewSeconds)
    return fail(Errc::replayed_request,
                "version 2 requests are refused for " + std::to_string(kMaxClockSkewSeconds) +
                    " s after an enclave start (they cannot be checked against replays); use version 3");
  return held;
}

Result<EnclaveService::Accepted> EnclaveService::accept(const http::Request& request) {
  auto envelope = protocol::parse_envelope(request.body());
  if (!envelope) return std::unexpected(envelope.error());
  keys_.maintain(now());
  auto held = check_version(*envelope);
  if (!held) return std::unexpected(held.error());
  // Past notAfter the key is no longer this enclave's to use, whatever the protocol version.
  if (held->key->expired(now()))
    return fail(Errc::unknown_key_id, "the enclave key has expired; fetch the attestation again");

  Accepted accepted;
  auto secret = held->key->decapsulate(envelope->cipher_text);
  if (!secret) return std::unexpected(secret.error());
  accepted.shared_secret = std::move(*secret);
  auto plaintext = protocol::open_request(*envelope, accepted.shared_secret, &accepted.response_secret);
  if (!plaintext) return std::unexpected(plaintext.error());
  // Only authenticated requests reserve a replay-cache slot, so forgeries cannot fill it; it is
  // committed once every check below passed, and released if one fails (refused requests take no
  // room). Every version with a keyId.
  std::optional<ReplayCache::Reservation> reservation;
  if (protocol::has_key_id(envelope->version)) {
    auto reserved = replay_.reserve(replay_tenant(request, options_.gateway_token_hash.has_value()),
                                    envelope->key_id, envelope->nonce, now());
    if (!reserved) return std::unexpected(reserved.error());
    reservation = std::move(*reserved);
  }

  auto parsed = protocol::parse_endpoint_request(plaintext->view());
  if (!parsed) return std::unexpected(parsed.error());
  auto shaping = choose_shaping(*parsed, envelope->version, options_.shaping);
  if (!shaping) return std::unexpected(shaping.error());
  auto routed = route_request(std::move(*parsed));
  if (!routed) return std::unexpected(routed.error());
  auto* chat = &routed->request;
  const auto engine = engines_.find(chat->model);
  if (engine == engines_.end()) {
    // The requested name is not echoed: it came encrypted. Model names served are public.
    std::string available;
    for (const auto& [name, unused] : engines_) available += (available.empty() ? "" : ", ") + name;
    return fail(Errc::invalid_inference, "model: the requested model is not served by this enclave (available: " +
                                             available + ")");
  }
  if (boost::beast::iequals(header_value(request, kKeyEnvHeader), "test") &&
      std::find(options_.test_models.begin(), options_.test_models.end(), chat->model) == options_.test_models.end())
    return fail(Errc::test_key_not_allowed, "test keys may only use the test models");
  if (reservation) reservation->commit();

  accepted.version = envelope->version;
  accepted.nonce = envelope->nonce;
  accepted.chat = std::move(*chat);
  accepted.route = routed->route;
  accepted.shaping = *shaping;
  accepted.engine = engine->second;
  return accepted;
}

http::awaitable<void> EnclaveService::send_refusal(const http::Request& request, http::ResponseWriter& writer,
                                                  const Error& error, const std::string& id,
                                                  std::chrono::steady_clock::time_point started) {
  spdlog::info("chat {} tenant={} refused: {} ({} bytes in, {:.1f} ms)", id,
               log_token(header_value(request, kTenantHeader)).value_or("-"), code_name(error.code),
               request.body().size(), ms_since(started));
  auto response = http::error_response(request, error);
  if (error.code == Errc::replay_quota_exceeded)
    response.set(field::retry_after, std::to_string(replay_.retry_after(
                                         replay_tenant(request, options_.gateway_token_hash.has_value()), now())));
  if (error.code == Errc::enclave_busy) response.set(field::retry_after, std::to_string(kBusyRetryAfterSeconds));
  response.set(kRequestIdHeader, id);
  co_await writer.send(std::move(response));
}

http::awaitable<void> EnclaveService::chat(http::Request& request, http::ResponseWriter& writer) {
  const auto started = Clock::now();
  const std::string id = request_id(request);
  const std::size_t body_bytes = request.body().size();
  // The gateway's API key id (not a secret), logged only when it is a plain token.
  const std::string tenant = log_token(header_value(request, kTenantHeader)).value_or("-");

  // The gateway token, then the capacity: a busy enclave spends nothing on a request (no
  // decapsulation, no replay-cache slot), and the client re-sends it sealed anew elsewhere.
  if (auto ok = check_gateway_token(request); !ok) {
    co_await send_refusal(request, writer, ok.error(), id, started);
    co_return;
  }
  if (!take_stream_slot()) {
    co_await send_refusal(request, writer,
                          Error{Errc::enclave_busy, "the enclave is serving its most streams at once (--max-streams " +
                                                        std::to_string(options_.max_streams) + "); retry later"},
                          id, started);
    co_return;
  }
  const CountedIn release{streams_};

  auto accepted = accept(request);
  if (!accepted) {
    co_await send_refusal(request, writer, accepted.error(), id, started);
    co_return;
  }
  const double open_ms = ms_since(started);

  auto header = http::event_stream_header();
  header.set(kRequestIdHeader, id);
  if (!co_await writer.begin_stream(std::move(header))) co_return;
  ChatEvents events(accepted->version == protocol::Version::v3
                        ? protocol::ResponseSealer::for_v3(accepted->response_secret)
                        : protocol::ResponseSealer(accepted->version, accepted->shared_secret, accepted->nonce),
                    started);
  const protocol::Usage provisional{.prompt_tokens = estimate_prompt_tokens(accepted->chat)};
  const std::string opening = events.opening(provisional);
  EngineOutcome outcome{.usage = provisional};
  if (co_await writer.write(opening)) {
    const auto sink = [&](std::string record) -> http::awaitable<bool> {
      co_return co_await writer.write(events.seal(protocol::EventKind::data, std::move(record)));
    };
    // Stream shaping wraps the chat endpoint's generation; the others answer unshaped (choose_shaping).
    // Two statements, not one co_await of a ?: (g++ 12 destroys the awaitable temporary twice).
    if (accepted->route->endpoint == protocol::Endpoint::chat_completions)
      outcome = co_await generate_shaped(*accepted->engine, accepted->chat, accepted->shaping, sink);
    else
      outcome = co_await accepted->route->handle(*accepted->engine, accepted->chat, *accepted->route, sink);
  }

  if (writer.client_gone()) {
    // What was generated before the caller left: the gateway bills it (rvenc-mux; a no-op on
    // HTTP/1.1, where the provisional usage is all the gateway gets).
    writer.send_trailer(usage_json(outcome.usage, true));
  } else {
    // The closing events and the end of the stream leave in one write.
    const std::string closing = events.closing(outcome);
    co_await writer.end_stream(closing);
  }
  log_chat(id, tenant, accepted->version, body_bytes, events, outcome, open_ms, started);
}

}  // namespace rvenc::enclave
