#include "rvenc/proxy/responses_store.hpp"

#include <algorithm>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "rvenc/protocol/endpoint.hpp"
#include "rvenc/protocol/responses.hpp"

namespace rvenc::proxy {

namespace json = boost::json;

crypto::Fingerprint ResponsesStore::owner_of(std::string_view api_key) noexcept {
  return crypto::keyed_fingerprint(crypto::as_bytes(api_key));
}

bool ResponsesStore::put(const crypto::Fingerprint& owner, json::array input, json::object response) {
  const auto* id = response.if_contains("id");
  if (options_.max_entries == 0 || id == nullptr || !id->is_string()) return false;
  Key key{owner, std::string(id->get_string())};
  erase(owner, key.second);
  const std::size_t size = json::serialize(input).size() + json::serialize(response).size();
  if (size > options_.max_bytes) return false;
  while (!entries_.empty() && (entries_.size() >= options_.max_entries || bytes_ + size > options_.max_bytes))
    drop_oldest();
  bytes_ += size;
  order_.push_back(key);
  entries_.emplace(std::move(key), Entry{std::move(input), std::move(response), size});
  return true;
}

const json::object* ResponsesStore::find(const crypto::Fingerprint& owner, std::string_view id) const {
  const auto it = entries_.find(Key{owner, std::string(id)});
  return it == entries_.end() ? nullptr : &it->second.response;
}

bool ResponsesStore::erase(const crypto::Fingerprint& owner, std::string_view id) {
  Key key{owner, std::string(id)};
  const auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  bytes_ -= it->second.bytes;
  entries_.erase(it);
  order_.erase(std::find(order_.begin(), order_.end(), key));
  return true;
}

void ResponsesStore::drop_oldest() {
  const auto it = entries_.find(order_.front());
  bytes_ -= it->second.bytes;
  entries_.erase(it);
  order_.pop_front();
}

Result<json::array> ResponsesStore::conversation(const crypto::Fingerprint& owner, std::string_view id) const {
  const auto it = entries_.find(Key{owner, std::string(id)});
  if (it == entries_.end())
    return fail(Errc::invalid_request, "previous_response_id: no stored response with this id (responses are kept by "
                                 "this rvenc proxy, in memory, only when created with store: true)");
  json::array items = it->second.input;
  for (auto& item : protocol::conversation_items(it->second.response)) items.push_back(std::move(item));
  return items;
}

Result<PreparedResponses> prepare_responses_request(std::string_view text, const ResponsesStore& store,
                                                   const crypto::Fingerprint& owner) {
  boost::system::error_code ec;
  json::value doc = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec || !doc.is_object()) return fail(Errc::invalid_request, "the request body is not a JSON object");
  PreparedResponses out;
  out.body = std::move(doc.get_object());
  // rvenc_endpoint is the proxy's to set: a caller's own is refused as an unknown parameter.
  if (out.body.contains(protocol::kEndpointMember))
    return fail(Errc::invalid_inference, "Unknown parameter \"rvenc_endpoint\" in a Responses request");
  if (const auto* v = out.body.if_contains("store"); v != nullptr && !v->is_null()) {
    if (!v->is_bool()) return fail(Errc::invalid_inference, "store must be a boolean");
    out.store = v->get_bool();
  }
  json::array input;
  if (const auto* v = out.body.if_contains("previous_response_id"); v != nullptr && !v->is_null()) {
    if (!v->is_string()) return fail(Errc::invalid_inference, "previous_response_id must be a string");
    auto earlier = store.conversation(owner, std::string_view(v->get_string().data(), v->get_string().size()));
    if (!earlier) return std::unexpected(earlier.error());
    input = std::move(*earlier);
    out.previous_response_id = *v;
  }
  if (const auto* v = out.body.if_contains("input"); v != nullptr && v->is_string()) {
    input.push_back(json::object{{"role", "user"}, {"content", *v}});
  } else if (v != nullptr && v->is_array()) {
    for (const auto& item : v->get_array()) input.push_back(item);
  } else if (v != nullptr && !v->is_null()) {
    return fail(Errc::invalid_inference, "input must be a string or an array of input items");
  }
  out.body.erase("previous_response_id");
  out.body["store"] = false;
  out.body["input"] = input;
  out.input = std::move(input);
  auto checked = protocol::translate_responses_request(out.body);
  if (!checked) return std::unexpected(checked.error());
  out.model = checked->model;
  out.stream = checked->stream;
  return out;
}

void restore_request_fields(json::object& response, const PreparedResponses& request) {
  response["store"] = request.store;
  response["previous_response_id"] = request.previous_response_id;
}

}  // namespace rvenc::proxy
