// Discovery per model at the gateway (PROTOCOL.md section 7): GET /rvenc/models (the union of the
// healthy enclaves' models) and GET /rvenc/attestation?challenge=HEX[&model=NAME][&all=1].
#include <utility>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/spdlog.h>

#include "rvenc/common/hex.hpp"
#include "rvenc/common/query.hpp"
#include "forwarding.hpp"
#include "services.hpp"
#include "rvenc/gateway/gateway.hpp"
#include "rvenc/protocol/attestation.hpp"

namespace rvenc::gateway {
namespace {

namespace beast_http = boost::beast::http;

struct AttestationQuery {
  protocol::Challenge challenge{};
  std::optional<std::string> model;
  bool all = false;
};

// challenge (required), model (optional, percent-decoded), all (1/true or 0/false); a parameter
// given twice or an unknown value is invalid_request, naming the parameter, never its value.
Result<AttestationQuery> parse_attestation_query(std::string_view query) {
  AttestationQuery out;
  auto challenge = protocol::challenge_from_query(query);
  if (!challenge) return std::unexpected(challenge.error());
  out.challenge = *challenge;
  bool seen_model = false;
  bool seen_all = false;
  for (const auto& [key, value] : split_query(query)) {
    if (key == "model") {
      if (std::exchange(seen_model, true)) return fail(Errc::invalid_request, "the model query parameter is given twice");
      auto model = percent_decode(value, "model");
      if (!model) return std::unexpected(model.error());
      if (model->empty() || model->size() > protocol::kMaxModelNameBytes)
        return fail(Errc::invalid_request, "the model query parameter must be 1 to " +
                                               std::to_string(protocol::kMaxModelNameBytes) + " bytes");
      out.model = std::move(*model);
    } else if (key == "all") {
      if (std::exchange(seen_all, true)) return fail(Errc::invalid_request, "the all query parameter is given twice");
      if (value == "1" || value == "true") out.all = true;
      else if (value != "0" && value != "false")
        return fail(Errc::invalid_request, "the all query parameter must be 1 or 0");
    }
  }
  return out;
}

}  // namespace

http::Response GatewayHandler::models_response(const RequestContext& context) const {
  const auto names = services_->enclaves.models();
  if (names.empty() && services_->enclaves.healthy_count() == 0)
    return gateway_error(context, Error{Errc::enclave_unavailable, "no enclave is available"});
  boost::json::array data;
  for (const auto& name : names)
    data.push_back(boost::json::object{{"id", name}, {"object", "model"}, {"created", services_->started_at}, {"owned_by", "rvenc"}});
  return http::json_response(200,
                             boost::json::serialize(boost::json::object{{"object", "list"}, {"data", std::move(data)}}));
}

http::awaitable<void> GatewayHandler::serve_attestation(RequestContext& context, http::ResponseWriter& writer) {
  auto query = parse_attestation_query(http::target_query(context.request));
  if (!query) {
    co_await send(context, writer, gateway_error(context, query.error()));
    co_return;
  }
  // No enclave known healthy (say one restarted a moment ago, right after a request found it
  // down): check them now rather than wait for the next health check. Bounded by the attestation
  // limit per address; the checks are one GET /healthz per enclave.
  if (services_->enclaves.healthy_count() == 0) co_await services_->enclaves.refresh();
  if (query->all) {
    co_await serve_all_attestations(context, writer, query->model, query->challenge);
    co_return;
  }
  // An enclave that fails at the connection is marked down (get_from) and the next one is tried.
  Error last{Errc::enclave_unavailable, "no enclave is available"};
  for (std::size_t attempt = 0; attempt < services_->enclaves.size(); ++attempt) {
    auto url = services_->enclaves.choose(query->model);
    if (!url) {
      if (attempt == 0) last = url.error();
      break;
    }
    auto response = co_await get_from(*url, std::string(context.request.target()));
    if (!response) {
      last = upstream_failure(response.error());
      if (response.error().code == Errc::upstream_timeout) break;
      continue;
    }
    if (response->result_int() == 200) services_->enclaves.learn_from_attestation(*url, response->body(), query->challenge);
    co_await send(context, writer, pass_through(context.request, response->base(), std::move(response->body())));
    co_return;
  }
  co_await send(context, writer, gateway_error(context, last));
}

http::awaitable<void> GatewayHandler::serve_all_attestations(RequestContext& context, http::ResponseWriter& writer,
                                                             const std::optional<std::string>& model,
                                                             const protocol::Challenge& challenge) {
  auto urls = services_->enclaves.choose_all(model);
  if (!urls) {
    co_await send(context, writer, gateway_error(context, urls.error()));
    co_return;
  }
  // One after another: a few replicas, each bounded; one that fails is left out of the answer.
  const std::string target = std::string(kAttestationPath) + "?challenge=" + to_hex(challenge);
  boost::json::array documents;
  for (const auto& url : *urls) {
    auto response = co_await get_from(url, target);
    if (!response || response->result_int() != 200) {
      spdlog::warn("{}: attestation of {} for all=1 failed: {}", context.request_id, url.origin(),
                   response ? "HTTP " + std::to_string(response->result_int()) : response.error().message);
      continue;
    }
    if (!services_->enclaves.learn_from_attestation(url, response->body(), challenge)) continue;
    boost::system::error_code ec;
    auto document = boost::json::parse(response->body(), ec);
    if (!ec) documents.push_back(std::move(document));
  }
  if (documents.empty()) {
    co_await send(context, writer,
                  gateway_error(context, Error{Errc::enclave_unavailable, "no enclave answered its attestation"}));
    co_return;
  }
  auto response = http::json_response(200, boost::json::serialize(boost::json::object{{"enclaves", std::move(documents)}}));
  response.set(beast_http::field::cache_control, "no-store");
  response.keep_alive(context.request.keep_alive());
  co_await send(context, writer, std::move(response));
}

}  // namespace rvenc::gateway
