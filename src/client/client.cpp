#include "rvenc/client/client.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <map>
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
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/system/system_error.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>

#include "rvenc/client/hardware.hpp"
#include "rvenc/common/clock.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/http/client.hpp"
#include "rvenc/http/url.hpp"
#include "rvenc/http/watchdog.hpp"
#include "rvenc/protocol/chat.hpp"
#include "rvenc/protocol/endpoint.hpp"
#include "rvenc/protocol/envelope.hpp"
#include "rvenc/protocol/responses.hpp"
#include "rvenc/protocol/sealing.hpp"
#include "rvenc/protocol/text_completion.hpp"
#include "replica_set.hpp"

namespace rvenc::client {

namespace asio = boost::asio;
namespace json = boost::json;
using http::awaitable;

namespace {

// Bodies read whole (attestation, model list, HTTP error answers) are JSON documents; attestation
// answers carry collateral (at most protocol::kMaxCollateralBytes a document) for a few replicas.
constexpr std::uint64_t kMaxJsonResponseBytes = 16 * 1024 * 1024;
constexpr std::size_t kMaxApiKeyBytes = 256;
constexpr std::string_view kChatPath = "/rvenc/chat/completions";
constexpr std::string_view kAttestationPath = "/rvenc/attestation";
constexpr std::string_view kModelsPath = "/rvenc/models";
// After the authenticated done only the end of the chunked body should follow, normally with done
// or at once: waited for this long (at most), so the connection can be reused, then dropped.
constexpr std::chrono::milliseconds kEndAfterDoneWait{250};
constexpr std::size_t kMaxBytesAfterDone = 64 * 1024;

// Most replica documents one attestation answer may list (`all=1`).
constexpr std::size_t kMaxReplicaDocuments = 256;
// The "model" of a chat request ("" when it has none: the enclave then refuses the request).
std::string request_model(const json::object& request) {
  const auto* model = request.if_contains("model");
  return model != nullptr && model->is_string() ? std::string(model->as_string()) : std::string();
}

// Failures before any answer that a replica explains: the request may go once more, sealed anew,
// after a fresh attestation (PROTOCOL.md section 5). The keys of a busy enclave stay valid.
// A document that verified, the models it serves, and until when its trust holds (its key's
// notAfter, or earlier the end of validity of its hardware evidence's certificates/collateral).
struct VerifiedDocument {
  protocol::AttestationDocument document;
  std::vector<std::string> models;
  std::int64_t trusted_until = 0;
};

bool replica_failure(Errc code) {
  return code == Errc::unknown_key_id || code == Errc::enclave_busy || code == Errc::enclave_unavailable;
}

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

// A client's state in four layers, each on the one below: GatewayLink (HTTP to the gateway and
// its answers in the SDK's terms), Attester (verified attestation documents), KeyMaker (keys per
// model and replica, made by one call at a time) and ClientState (a sealed request and its
// decoded answer). The layers share one object: the public handles (Client, Completions, ...)
// hold a shared_ptr<ClientState>.
struct GatewayLink {
  GatewayLink(std::size_t max_idle_connections, std::string ca_file)
      : http(http::HttpClientOptions{.max_idle_per_host = max_idle_connections,
                                 .body_limit = kMaxJsonResponseBytes,
                                 .ca_file = std::move(ca_file)}) {}

  ClientOptions options;
  http::Url base;
  http::HttpClient http;
  // The gateway's largest request body (its X-Rvenc-Max-Body); 0 until it said.
  std::atomic<std::uint64_t> gateway_max_body{0};

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

  void learn_max_body(const http::Response& response) {
    const auto field = response.base().find(protocol::kMaxBodyHeader);
    if (field == response.base().end()) return;
    std::uint64_t value = 0;
    const std::string_view text = field->value();
    if (std::from_chars(text.data(), text.data() + text.size(), value).ec == std::errc{} && value > 0)
      gateway_max_body.store(value);
  }

  // request_too_large before sending when the sealed body is over the gateway's published limit,
  // in the user's terms: the request's bytes, how many fit, and the flag that raises the limit.
  [[nodiscard]] Status check_sealed_size(std::size_t plaintext_bytes, std::size_t sealed_bytes) const {
    const std::uint64_t limit = gateway_max_body.load();
    if (limit == 0 || sealed_bytes <= limit) return {};
    const auto fit = static_cast<std::uint64_t>(static_cast<double>(limit) * static_cast<double>(plaintext_bytes) /
                                                static_cast<double>(sealed_bytes));
    return fail(Errc::request_too_large,
                "this request is " + std::to_string(plaintext_bytes) + " bytes of JSON (prompt and messages), " +
                    std::to_string(sealed_bytes) + " bytes once sealed, over the gateway's limit of " +
                    std::to_string(limit) + " sealed bytes: about " + std::to_string(fit) +
                    " bytes of JSON fit; the gateway's operator raises the limit with rvenc gateway --max-body "
                    "(rvenc up --max-body)");
  }

  // A 404 on a path every gateway serves: the URL names something else (most often the proxy).
  [[nodiscard]] Error not_a_gateway(std::string_view target) const {
    const std::string path(target.substr(0, target.find('?')));
    return Error{Errc::not_found,
                 base.origin() + " does not answer like an rvenc gateway (404 on GET " + path +
                     "); if it is the rvenc proxy, give the gateway's URL instead (rvenc up prints it) and "
                     "point only OpenAI clients at the proxy",
                 404};
  }

  awaitable<Result<std::string>> get_json(std::string target, bool with_api_key) {
    http::Request request = http::make_request(http::Verb::get, base.join(target));
    if (with_api_key) request.set(http::beast::http::field::authorization, "Bearer " + options.api_key);
    auto response = co_await http.request(base, std::move(request), timeouts());
    if (!response) co_return std::unexpected(transport_error(response.error()));
    learn_max_body(*response);
    if (response->result_int() != 200) {
      Error error = error_from_http(response->result_int(), response->body());
      // A gateway's own 404s name a model; any other 404 on these paths means it is no gateway.
      if (error.http_status == 404 && error.code != Errc::model_not_found) error = not_a_gateway(target);
      co_return std::unexpected(std::move(error));
    }
    co_return std::move(response->body());
  }

  awaitable<Result<json::object>> models() {
    auto body = co_await get_json(std::string(kModelsPath), !options.api_key.empty());  // keyless: the public list
    if (!body) co_return std::unexpected(body.error());
    boost::system::error_code ec;
    json::value value = json::parse(*body, ec);
    if (ec || !value.is_object()) co_return fail(Errc::upstream_error, "the model list is not a JSON object");
    co_return std::move(value.as_object());
  }

  // GET /rvenc/attestation with a fresh challenge, `&model=` when given, `&all=1` for every replica.
  awaitable<Result<std::pair<std::string, protocol::Challenge>>> fetch_attestation(std::string_view model, bool all) {
    const auto challenge = crypto::random_array<protocol::kChallengeBytes>();
    std::string target = std::string(kAttestationPath) + "?challenge=" + to_hex(challenge);
    if (!model.empty()) target += "&model=" + boost::urls::encode(model, boost::urls::unreserved_chars);
    if (all) target += "&all=1";
    // With the API key when there is one: the gateway limits attestation per address only for
    // callers without a valid key (many clients behind one address).
    auto body = co_await get_json(std::move(target), !options.api_key.empty());
    if (!body) co_return std::unexpected(body.error());
    co_return std::pair{std::move(*body), challenge};
  }
};

// Attestation documents fetched through the gateway and verified against the client's policy.
struct Attester : GatewayLink {
  using GatewayLink::GatewayLink;

  // The verified document of one enclave (serving `model` when given).
  awaitable<Result<VerifiedDocument>> attest_one(std::string_view model) {
    auto fetched = co_await fetch_attestation(model, false);
    if (!fetched) co_return std::unexpected(fetched.error());
    boost::system::error_code ec;
    const json::value value = json::parse(fetched->first, ec);
    if (ec) co_return fail(Errc::attestation_failed, "the attestation document is malformed: not JSON");
    co_return verified_document(value, fetched->second, model);
  }

  awaitable<Result<protocol::AttestationDocument>> attest(std::string_view model = {}) {
    auto verified = co_await attest_one(model);
    if (!verified) co_return std::unexpected(verified.error());
    co_return std::move(verified->document);
  }

  // The verified documents of every replica serving `model` (a gateway of older releases sends
  // one document: then that one). Documents that do not verify or name other models are left out;
  // attestation_failed when none is left.
  awaitable<Result<std::vector<VerifiedDocument>>> attest_all(
      std::string_view model) {
    auto fetched = co_await fetch_attestation(model, true);
    if (!fetched) co_return std::unexpected(fetched.error());
    boost::system::error_code ec;
    json::value value = json::parse(fetched->first, ec);
    if (ec || !value.is_object()) co_return fail(Errc::attestation_failed, "the attestation answer is not a JSON object");
    std::vector<json::value> documents;
    if (const auto* list = value.as_object().if_contains("enclaves")) {
      if (!list->is_array() || list->as_array().size() > kMaxReplicaDocuments)
        co_return fail(Errc::attestation_failed, "the attestation answer's \"enclaves\" is not a list of at most " +
                                                     std::to_string(kMaxReplicaDocuments) + " documents");
      documents.assign(list->as_array().begin(), list->as_array().end());
    } else {
      documents.push_back(std::move(value));
    }
    std::vector<VerifiedDocument> verified;
    std::optional<Error> first_failure;
    for (const auto& document : documents) {
      auto one = verified_document(document, fetched->second, model);
      if (one) verified.push_back(std::move(*one));
      else if (!first_failure) first_failure = one.error();
    }
    if (verified.empty())
      co_return std::unexpected(first_failure ? *first_failure
                                              : Error{Errc::attestation_failed, "the gateway listed no enclave"});
    co_return verified;
  }

  // One document checked against the policy and our challenge, with the models it says it
  // serves. A document naming models without `model` (when given) is refused.
  [[nodiscard]] Result<VerifiedDocument> verified_document(
      const json::value& value, const protocol::Challenge& challenge, std::string_view model) const {
    auto document = protocol::parse_attestation(json::serialize(value));
    if (!document)
      return std::unexpected(
          Error{Errc::attestation_failed, "the attestation document is malformed: " + document.error().message});
    auto until = protocol::verify_attestation_until(*document, challenge, options.attestation);
    if (!until) return std::unexpected(Error{Errc::attestation_failed, until.error().message});
    std::vector<std::string> models = document->models;
    if (!model.empty() && !models.empty() && std::find(models.begin(), models.end(), model) == models.end())
      return fail(Errc::attestation_failed, "the gateway sent the attestation of an enclave that does not serve the model");
    return VerifiedDocument{std::move(*document), std::move(models), *until};
  }
};

// The encryption keys per model and replica: made from verified documents, kept while trusted,
// made by one call per model at a time whose result the others share.
struct KeyMaker : Attester {
  using Attester::Attester;

  ReplicaSets sets;  // the verified keys per model and replica
  std::shared_ptr<const EncryptionKeys> keys;  // made or replaced last; guarded by sets.mutex()

  // While one call makes the keys of a model (current_keys), concurrent calls for it wait for its
  // result instead of each attesting. Thread-safe wake-ups: the waiters may run on other
  // io_contexts (blocking calls) or threads. All guarded by sets.mutex().
  using Wakeup = asio::experimental::concurrent_channel<void(boost::system::error_code)>;
  struct Making {
    bool active = false;
    std::uint64_t attempts_finished = 0;
    std::optional<Error> last_attempt_error;  // of the attempt that finished last (none if cancelled)
    std::vector<std::shared_ptr<Wakeup>> waiting;
  };
  std::map<std::string, Making, std::less<>> making;  // per model

  // A fresh encapsulation to a verified document's key, used until the trust ends: the key's
  // notAfter or, earlier, the end of validity of its hardware evidence's certificates/collateral.
  [[nodiscard]] static Result<std::shared_ptr<const EncryptionKeys>> encapsulate(const VerifiedDocument& verified,
                                                                                 std::vector<std::string> models) {
    auto encapsulation = crypto::xwing_encapsulate(verified.document.public_key);
    if (!encapsulation) return std::unexpected(encapsulation.error());
    return std::make_shared<const EncryptionKeys>(EncryptionKeys{.shared_secret = std::move(encapsulation->shared_secret),
                                                                 .cipher_text = encapsulation->cipher_text,
                                                                 .key_id = verified.document.key_id,
                                                                 .not_after = verified.trusted_until,
                                                                 .refresh_at = refresh_time(verified.trusted_until, unix_now()),
                                                                 .models = std::move(models)});
  }

  // Verified attestation of one enclave (for `model` when given), fresh encapsulation: the new
  // keys become `model`'s only keys and the ones in use.
  awaitable<Result<std::shared_ptr<const EncryptionKeys>>> generate_keys(std::string_view model) {
    auto verified = co_await attest_one(model);
    if (!verified) co_return std::unexpected(verified.error());
    // Keys asked for a model are that model's (the gateway chose an enclave serving it).
    auto generated = encapsulate(*verified, model.empty() ? std::vector<std::string>{} : std::vector{std::string(model)});
    if (!generated) co_return std::unexpected(generated.error());
    const std::lock_guard lock(sets.mutex());
    sets.install_locked(model, {std::make_shared<Replica>(Replica{*generated, 0})});
    keys = *generated;
    co_return *generated;
  }

  // Keys for every replica serving `model`: those already trusted (same keyId, still usable) are
  // kept with their in-flight counts, the others made from their verified documents.
  awaitable<Result<std::vector<std::shared_ptr<Replica>>>> refresh_replicas(std::string_view model, bool fresh = false) {
    auto documents = co_await attest_all(model);
    if (!documents) co_return std::unexpected(documents.error());
    std::vector<std::shared_ptr<Replica>> known;
    if (!fresh) {
      const std::lock_guard lock(sets.mutex());
      known = sets.usable_locked(model, unix_now());
    }
    std::vector<std::shared_ptr<Replica>> replicas;
    for (auto& verified : *documents) {
      const auto kept = std::find_if(known.begin(), known.end(), [&](const auto& replica) {
        return replica->keys->key_id == verified.document.key_id;
      });
      if (kept != known.end()) {
        replicas.push_back(*kept);
        continue;
      }
      auto made = encapsulate(verified, std::move(verified.models));
      if (!made) co_return std::unexpected(made.error());
      replicas.push_back(std::make_shared<Replica>(Replica{std::move(*made), 0}));
    }
    const std::lock_guard lock(sets.mutex());
    sets.install_locked(model, replicas);
    keys = replicas.front()->keys;
    co_return replicas;
  }

  // A lease on the replica for a request to `model`, keys made first when there are none (or when
  // `stale` is the set's current generation: a request failed on it): by one call per model at a
  // time, whose result (keys or error) the calls that came meanwhile share.
  awaitable<Result<Lease>> current_keys(std::string model, std::optional<std::uint64_t> stale,
                                        std::optional<crypto::KeyId> avoid) {
    const auto executor = co_await asio::this_coro::executor;
    for (;;) {
      std::shared_ptr<Wakeup> wakeup;
      std::uint64_t attempt = 0;
      {
        const std::lock_guard lock(sets.mutex());
        if (!stale || *stale != sets.generation_locked(model))
          if (auto lease = sets.pick_locked(model, avoid, unix_now())) co_return std::move(*lease);
        Making& state = making[model];
        if (!state.active) {
          state.active = true;
          break;
        }
        wakeup = std::make_shared<Wakeup>(executor, 1);
        state.waiting.push_back(wakeup);
        attempt = state.attempts_finished;
      }
      // The channel lives on this call's executor: it leaves the list before this call ends,
      // however it ends (a blocking call's io_context goes with it).
      struct Leave {
        KeyMaker& state;
        const std::string& model;
        const std::shared_ptr<Wakeup>& wakeup;
        ~Leave() {
          const std::lock_guard lock(state.sets.mutex());
          std::erase(state.making[model].waiting, wakeup);
        }
      } leave{*this, model, wakeup};
      co_await wakeup->async_receive(asio::as_tuple(asio::use_awaitable));
      const std::lock_guard lock(sets.mutex());
      const Making& state = making[model];
      // A cancelled attempt left no error: then this call makes the keys itself.
      if (state.attempts_finished > attempt && state.last_attempt_error) co_return std::unexpected(*state.last_attempt_error);
      if (state.attempts_finished > attempt) stale.reset();  // refreshed meanwhile
    }
    // Whatever ends this attempt (keys, error, cancellation) wakes the calls waiting for it.
    std::optional<Error> failure;
    struct Finish {
      KeyMaker& state;
      const std::string& model;
      const std::optional<Error>& failure;
      ~Finish() {
        const std::lock_guard lock(state.sets.mutex());
        Making& attempt = state.making[model];
        attempt.active = false;
        ++attempt.attempts_finished;
        attempt.last_attempt_error = failure;
        for (const auto& wakeup : attempt.waiting) (void)wakeup->try_send(boost::system::error_code{});
      }
    } finish{*this, model, failure};
    auto refreshed = co_await refresh_replicas(model);
    // A cancelled call's failure is its own (its request was cut), not one to share.
    const asio::cancellation_state cancellation = co_await asio::this_coro::cancellation_state;
    if (!refreshed) {
      if (cancellation.cancelled() == asio::cancellation_type::none) failure = refreshed.error();
      co_return std::unexpected(refreshed.error());
    }
    const std::lock_guard lock(sets.mutex());
    if (auto lease = sets.pick_locked(model, avoid, unix_now())) co_return std::move(*lease);
    // Keys just attested but within kKeyExpiryMargin of their notAfter serve this one request.
    if (auto lease = sets.pick_locked(model, avoid, 0)) co_return std::move(*lease);
    co_return fail(Errc::attestation_failed, "the attestation gave no keys for the model");
  }

  awaitable<Result<EncryptionKeys>> copy_of_new_keys(std::string model) {
    auto generated = co_await generate_keys(model);
    if (!generated) co_return std::unexpected(generated.error());
    co_return **generated;
  }

  awaitable<Result<std::vector<EncryptionKeys>>> copy_of_replica_keys(std::string model, bool fresh) {
    auto replicas = co_await refresh_replicas(model, fresh);
    if (!replicas) co_return std::unexpected(replicas.error());
    std::vector<EncryptionKeys> copies;
    for (const auto& replica : *replicas) copies.push_back(*replica->keys);
    co_return copies;
  }

  // After a request failed on the keys `failed` before any answer: true when it may go once more
  // (first attempt, call not cancelled); those keys are dropped unless their replica was only busy
  // (those keys only: keys of the same id from a newer attestation stay).
  awaitable<bool> may_resend(int attempt, const EncryptionKeys& failed, Errc code) {
    const asio::cancellation_state cancellation = co_await asio::this_coro::cancellation_state;
    if (attempt != 0 || cancellation.cancelled() != asio::cancellation_type::none) co_return false;
    if (code != Errc::enclave_busy) {
      sets.forget(failed);
      const std::lock_guard lock(sets.mutex());
      if (keys.get() == &failed) keys.reset();
    }
    co_return true;
  }
};

// A sealed request to the least busy replica and its answer decoded: what the public calls run.
struct ClientState : KeyMaker {
  using KeyMaker::KeyMaker;

  // One chat request sealed to the least busy replica of its model, its answer decoded into
  // `on_chunk`. A failure a replica explains (replica_failure, or no HTTP status at all) before
  // any answer re-attests the model and sends the request once more, sealed anew, to another
  // replica when there is one. Once the stream has begun nothing is re-sent.
  // The request as sealed: with the client's shaping ask unless the request has its own.
  [[nodiscard]] std::string request_plaintext(const json::object& request) const {
    if (!options.shaping || request.contains(protocol::kShapingMember)) return json::serialize(request);
    json::object shaped = request;
    shaped[protocol::kShapingMember] = protocol::shaping_member(*options.shaping);
    return json::serialize(shaped);
  }

  awaitable<Status> chat(const json::object& request, const AsyncChunkHandler& on_chunk, const CallOptions& call) {
    const std::string plaintext = request_plaintext(request);
    const std::string model = request_model(request);
    std::optional<std::uint64_t> stale;
    std::optional<crypto::KeyId> avoid;
    for (int attempt = 0;; ++attempt) {
      auto lease = co_await current_keys(model, stale, avoid);
      if (!lease) co_return std::unexpected(lease.error());
      const EncryptionKeys& k = lease->keys();
      stale = lease->generation();
      avoid = k.key_id;

      const crypto::Nonce nonce = crypto::random_nonce();
      const protocol::SealInput seal{.version = options.protocol_version,
                                     .shared_secret = &k.shared_secret,
                                     .cipher_text = &k.cipher_text,
                                     .key_id = k.key_id,
                                     .nonce = nonce,
                                     .timestamp = unix_now()};
      std::string sealed = protocol::serialize_envelope(protocol::seal_request(seal, plaintext));
      if (auto fits = check_sealed_size(plaintext.size(), sealed.size()); !fits) co_return std::unexpected(fits.error());
      http::Request http_request = http::make_request(http::Verb::post, base.join(kChatPath), std::move(sealed));
      http_request.set(http::beast::http::field::authorization, "Bearer " + options.api_key);
      http_request.set(http::beast::http::field::accept, http::kEventStreamContentType);

      auto opened = co_await http.open(base, std::move(http_request), timeouts());
      if (!opened) {
        Error error = transport_error(opened.error());
        if (error.code == Errc::transport_error && co_await may_resend(attempt, k, error.code)) continue;
        co_return std::unexpected(std::move(error));
      }
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
        if (replica_failure(error.code) && co_await may_resend(attempt, k, error.code)) continue;
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

// The request with the member naming its endpoint (docs/endpoints.md).
json::object for_endpoint(json::object request, protocol::Endpoint endpoint) {
  request[protocol::kEndpointMember] = json::string(protocol::endpoint_name(endpoint));
  return request;
}

awaitable<Result<json::object>> assembled_text(ClientState& state, json::object request, CallOptions call) {
  protocol::TextCompletionAssembler assembler;
  const AsyncChunkHandler collect = [&assembler](const Chunk& chunk) -> awaitable<Status> {
    assembler.add_chunk(chunk.object);
    co_return Status{};
  };
  const json::object marked = for_endpoint(std::move(request), protocol::Endpoint::completions);
  if (auto done = co_await state.chat(marked, collect, call); !done) co_return std::unexpected(done.error());
  co_return assembler.completion();
}

awaitable<Result<json::object>> embedding_list(ClientState& state, json::object request, CallOptions call) {
  std::optional<json::object> list;
  bool extra = false;
  const AsyncChunkHandler collect = [&](const Chunk& chunk) -> awaitable<Status> {
    if (list) extra = true;
    list = chunk.object;
    co_return Status{};
  };
  const json::object marked = for_endpoint(std::move(request), protocol::Endpoint::embeddings);
  if (auto done = co_await state.chat(marked, collect, call); !done) co_return std::unexpected(done.error());
  if (!list || extra)
    co_return fail(Errc::upstream_error, "the enclave's embeddings answer must be exactly one chunk");
  co_return std::move(*list);
}


}  // namespace

// --- EncryptionKeys ---------------------------------------------------------------------------

std::int64_t refresh_time(std::int64_t not_after, std::int64_t verified_at) noexcept {
  const std::int64_t left = std::max<std::int64_t>(0, not_after - verified_at);
  return not_after - std::min<std::int64_t>(kKeyExpiryMargin.count(), left / 2);
}

std::string EncryptionKeys::to_json() const {
  json::object object{{"sharedSecret", to_hex(shared_secret.span())},
                      {"cipherText", to_hex(cipher_text)},
                      {"keyId", to_hex(key_id)}};
  if (not_after) object["notAfter"] = *not_after;
  if (refresh_at) object["refreshAt"] = *refresh_at;
  if (!models.empty()) object["models"] = json::array(models.begin(), models.end());
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
  if (const auto* refresh_at = object.if_contains("refreshAt")) {
    if (!refresh_at->is_int64() || refresh_at->get_int64() < 0)
      return fail(Errc::invalid_request, "encryption keys: refreshAt must be a non-negative integer");
    keys.refresh_at = refresh_at->get_int64();
  }
  if (const auto* models = object.if_contains("models")) {
    if (!models->is_array()) return fail(Errc::invalid_request, "encryption keys: models must be a list of names");
    for (const auto& name : models->as_array()) {
      if (!name.is_string() || name.as_string().empty())
        return fail(Errc::invalid_request, "encryption keys: models must be a list of names");
      keys.models.emplace_back(name.as_string());
    }
  }
  return keys;
}

bool EncryptionKeys::serves(std::string_view model) const {
  return models.empty() || std::find(models.begin(), models.end(), model) != models.end();
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

// --- TextCompletions, Embeddings --------------------------------------------------------------

Result<json::object> TextCompletions::create(const json::object& request, const CallOptions& options) const {
  return run_blocking<Result<json::object>>(state_, [&](ClientState& state) {
    return guarded<json::object>(state, [&]() { return assembled_text(state, request, options); });
  });
}

Status TextCompletions::create(const json::object& request, const ChunkHandler& on_chunk,
                               const CallOptions& options) const {
  const AsyncChunkHandler handler = [&on_chunk](const Chunk& chunk) -> awaitable<Status> { co_return on_chunk(chunk); };
  const json::object marked = for_endpoint(request, protocol::Endpoint::completions);
  return run_blocking<Status>(state_, [&](ClientState& state) {
    return guarded<void>(state, [&]() { return state.chat(marked, handler, options); });
  });
}

awaitable<Result<json::object>> TextCompletions::async_create(json::object request, CallOptions options) const {
  auto state = state_;
  co_return co_await guarded<json::object>(*state, [&]() { return assembled_text(*state, request, options); });
}

awaitable<Status> TextCompletions::async_create(json::object request, AsyncChunkHandler on_chunk,
                                                CallOptions options) const {
  auto state = state_;
  const json::object marked = for_endpoint(std::move(request), protocol::Endpoint::completions);
  co_return co_await guarded<void>(*state, [&]() { return state->chat(marked, on_chunk, options); });
}

Result<json::object> Embeddings::create(const json::object& request, const CallOptions& options) const {
  return run_blocking<Result<json::object>>(state_, [&](ClientState& state) {
    return guarded<json::object>(state, [&]() { return embedding_list(state, request, options); });
  });
}

awaitable<Result<json::object>> Embeddings::async_create(json::object request, CallOptions options) const {
  auto state = state_;
  co_return co_await guarded<json::object>(*state, [&]() { return embedding_list(*state, request, options); });
}

// --- Responses --------------------------------------------------------------------------------

namespace {

awaitable<Result<json::object>> final_response(ClientState& state, json::object request, CallOptions call) {
  std::optional<json::object> response;
  const AsyncChunkHandler collect = [&response](const Chunk& event) -> awaitable<Status> {
    if (auto terminal = protocol::terminal_response(event.object)) response = std::move(*terminal);
    co_return Status{};
  };
  const json::object body = for_endpoint(std::move(request), protocol::Endpoint::responses);
  if (auto done = co_await state.chat(body, collect, call); !done)
    co_return std::unexpected(done.error());
  if (!response) co_return fail(Errc::upstream_error, "the Responses stream ended without a final response event");
  co_return std::move(*response);
}

}  // namespace

Result<json::object> Responses::create(const json::object& request, const CallOptions& options) const {
  return run_blocking<Result<json::object>>(state_, [&](ClientState& state) {
    return guarded<json::object>(state, [&]() { return final_response(state, request, options); });
  });
}

Status Responses::create(const json::object& request, const ChunkHandler& on_event, const CallOptions& options) const {
  const AsyncChunkHandler handler = [&on_event](const Chunk& chunk) -> awaitable<Status> { co_return on_event(chunk); };
  // Named: ClientState::chat keeps a reference to the request across its suspensions.
  const json::object body = for_endpoint(request, protocol::Endpoint::responses);
  return run_blocking<Status>(state_, [&](ClientState& state) {
    return guarded<void>(state, [&]() { return state.chat(body, handler, options); });
  });
}

awaitable<Result<json::object>> Responses::async_create(json::object request, CallOptions options) const {
  auto state = state_;
  co_return co_await guarded<json::object>(*state, [&]() { return final_response(*state, request, options); });
}

awaitable<Status> Responses::async_create(json::object request, AsyncChunkHandler on_event, CallOptions options) const {
  auto state = state_;
  // Named: ClientState::chat keeps a reference to the request across its suspensions.
  const json::object body = for_endpoint(std::move(request), protocol::Endpoint::responses);
  co_return co_await guarded<void>(*state, [&]() { return state->chat(body, on_event, options); });
}

// --- Client -----------------------------------------------------------------------------------

Client::Client(std::shared_ptr<detail::ClientState> state) : state_(std::move(state)) {
  chat.completions.state_ = state_;
  completions.state_ = state_;
  embeddings.state_ = state_;
  responses.state_ = state_;
}

const ClientOptions& Client::options() const noexcept { return state_->options; }

Result<protocol::AttestationDocument> Client::attest(std::string_view model) const {
  return run_blocking<Result<protocol::AttestationDocument>>(state_, [model](ClientState& state) {
    return guarded<protocol::AttestationDocument>(state, [&state, model]() { return state.attest(model); });
  });
}

awaitable<Result<protocol::AttestationDocument>> Client::async_attest(std::string model) const {
  auto state = state_;
  co_return co_await guarded<protocol::AttestationDocument>(*state, [&]() { return state->attest(model); });
}

Result<EncryptionKeys> Client::generate_encryption_keys(std::string_view model) const {
  return run_blocking<Result<EncryptionKeys>>(state_, [model](ClientState& state) {
    return guarded<EncryptionKeys>(state, [&state, model]() { return state.copy_of_new_keys(std::string(model)); });
  });
}

awaitable<Result<EncryptionKeys>> Client::async_generate_encryption_keys(std::string model) const {
  auto state = state_;
  co_return co_await guarded<EncryptionKeys>(*state, [&]() { return state->copy_of_new_keys(model); });
}

Result<std::vector<EncryptionKeys>> Client::generate_replica_keys(std::string_view model, bool fresh) const {
  return run_blocking<Result<std::vector<EncryptionKeys>>>(state_, [model, fresh](ClientState& state) {
    return guarded<std::vector<EncryptionKeys>>(
        state, [&state, model, fresh]() { return state.copy_of_replica_keys(std::string(model), fresh); });
  });
}

awaitable<Result<std::vector<EncryptionKeys>>> Client::async_generate_replica_keys(std::string model, bool fresh) const {
  auto state = state_;
  co_return co_await guarded<std::vector<EncryptionKeys>>(*state,
                                                          [&]() { return state->copy_of_replica_keys(model, fresh); });
}

std::optional<EncryptionKeys> Client::encryption_keys() const {
  const std::lock_guard lock(state_->sets.mutex());
  if (!state_->keys) return std::nullopt;
  return *state_->keys;
}

std::vector<EncryptionKeys> Client::encryption_keys_for(std::string_view model) const {
  return state_->sets.keys_of(model);
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
// "/v1" or "/v1/" (any prefix before it): an OpenAI base URL, never a gateway's.
bool ends_in_v1(std::string_view target) {
  target = target.substr(0, target.find('?'));
  while (target.size() > 1 && target.back() == '/') target.remove_suffix(1);
  return target.ends_with("/v1");
}

Result<std::shared_ptr<ClientState>> make_state(ClientOptions options, bool need_api_key) {
  if (auto ok = validate(options, need_api_key); !ok) return std::unexpected(ok.error());
  install_hardware_verifier(options);
  if (auto ok = validate_gateway_url(options.base_url); !ok) return std::unexpected(ok.error());
  auto base = http::parse_url(options.base_url);
  auto state = std::make_shared<ClientState>(options.max_idle_connections, options.ca_file);
  state->base = std::move(*base);
  for (const auto& keys : options.replica_keys) state->sets.add(keys);
  if (options.encryption_keys) {
    state->sets.add(*options.encryption_keys);
    state->keys = std::make_shared<const EncryptionKeys>(std::move(*options.encryption_keys));
  }
  options.encryption_keys.reset();
  options.replica_keys.clear();
  state->options = std::move(options);
  return state;
}
}  // namespace

Status validate_gateway_url(std::string_view url) {
  auto base = http::parse_url(url);
  if (!base) return fail(Errc::invalid_request, "base_url: " + base.error().message);
  if (ends_in_v1(base->target))
    return fail(Errc::invalid_request, "the gateway URL " + std::string(url) +
                                           " ends in /v1, like an OpenAI base URL (the proxy's); give the gateway's "
                                           "own URL without /v1 (rvenc up prints it), e.g. " +
                                           base->origin());
  return {};
}

Result<Client> create_client(ClientOptions options) {
  auto state = make_state(std::move(options), true);
  if (!state) return std::unexpected(state.error());
  return Client(std::move(*state));
}

Result<Client> detail::keyless_client(const ClientOptions& options) {
  ClientOptions copy = options;
  copy.encryption_keys.reset();
  copy.replica_keys.clear();
  auto state = make_state(std::move(copy), false);
  if (!state) return std::unexpected(state.error());
  return Client(std::move(*state));
}

Result<EncryptionKeys> generate_encryption_keys(const ClientOptions& options, std::string_view model) {
  auto client = detail::keyless_client(options);
  if (!client) return std::unexpected(client.error());
  return client->generate_encryption_keys(model);
}

Result<protocol::AttestationDocument> attest(const ClientOptions& options, std::string_view model) {
  auto client = detail::keyless_client(options);
  if (!client) return std::unexpected(client.error());
  return client->attest(model);
}

Status check_gateway(const ClientOptions& options) {
  auto client = detail::keyless_client(options);
  if (!client) return std::unexpected(client.error());
  auto models = client->models();
  // A gateway that refuses the probe (an admin-only model list) still answered as a gateway.
  if (!models && models.error().http_status != 401 && models.error().http_status != 403)
    return std::unexpected(models.error());
  return {};
}

}  // namespace rvenc::client
