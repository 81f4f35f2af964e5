// End to end on hardware attestation (issue 21 item 2): `rvenc enclave --attestation tdx|sev-snp`
// on a fake configfs-tsm whose quotes / reports the test signers make for the REPORT_DATA the
// enclave writes, collateral from `--collateral DIR` (TDX) or the auxblob (SEV-SNP), a real
// gateway, then the C++ SDK, `rvenc chat` and `rvenc proxy` verifying the evidence under the
// signers' test roots. Negative: the vendors' pinned roots refuse the test chains, a debug TEE is
// refused by default, a measurement not in the policy is refused at `measurement`.
#include <sys/stat.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <boost/beast/http/field.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include "enclave/fake_hardware_enclave.hpp"
#include "rvenc/client/client.hpp"
#include "rvenc/common/hex.hpp"
#include "rvenc/http/client.hpp"
#include "support/snp_signer.hpp"
#include "support/tdx_signer.hpp"
#include "support/test_support.hpp"

namespace rvenc::client {
namespace {

namespace json = boost::json;
namespace att = attestation;
using enclave::TsmKind;
using enclave::fake::FakeHardwareEnclave;
using test::ChildProcess;

constexpr std::string_view kDemoGreeting = "Hello from the rvenc demo engine";

std::pair<int, std::string> run_rvenc(std::vector<std::string> args) {
  args.insert(args.begin(), test::rvenc_binary());
  ChildProcess process(args, {{"RVENC_API_KEY", ""}, {"RVENC_ATTESTATION_POLICY", ""}});
  const int status = process.wait_exit(std::chrono::seconds(60));
  return {status, process.output()};
}

std::vector<std::uint8_t> pem_to_der(std::string_view pem) {
  const auto begin = pem.find('\n') + 1;
  const auto end = pem.find("-----END");
  std::string body;
  for (char c : pem.substr(begin, end - begin))
    if (c != '\n') body += c;
  return *protocol::base64_decode(body, "pem");
}

std::vector<std::string> pem_blocks(std::string_view pem) { return att::parse_trust_anchors(pem)->pem_roots; }

// The SEV-SNP certificate table (GHCB) of the VCEK, ASK and ARK, as the host provisions it.
std::vector<std::uint8_t> snp_auxblob(const att::Collateral& collateral) {
  const auto* ask_ark = collateral.find("ask_ark.pem");
  const auto chain = pem_blocks(std::string_view(reinterpret_cast<const char*>(ask_ark->data()), ask_ark->size()));
  return enclave::fake::snp_cert_table({{"63da758d-e664-4564-adc5-f4b93be8accd", *collateral.find("vcek.der")},
                                        {"4ab7b379-bbac-4fe4-a02f-05aef327c782", pem_to_der(chain.at(0))},
                                        {"c0b406a4-a803-4952-9743-3fb6014cd0ae", pem_to_der(chain.at(1))}});
}

void write_file(const std::filesystem::path& path, std::span<const std::uint8_t> bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
}

// One hardware stack: signer, fake TSM + enclave, keys, gateway.
class HardwareStack {
 public:
  HardwareStack(TsmKind kind, bool debug) : kind_(kind) {
    std::vector<std::string> extra;
    std::vector<std::uint8_t> auxblob;
    att::TrustAnchors anchors;
    enclave::fake::FakeTsm::ReportMaker maker;
    if (kind == TsmKind::tdx) {
      tdx_ = std::make_unique<test::TdxTestSigner>(test::TdxTestSigner::create());
      test::TdxQuoteOptions quote;
      quote.td_attributes[0] = debug ? 1 : 0;
      maker = [signer = tdx_.get(), quote](const protocol::ReportData& rd) {
        std::array<std::uint8_t, 64> data{};
        std::copy(rd.begin(), rd.end(), data.begin());
        return signer->quote(data, quote);
      };
      const auto collateral_dir = dir_.path() / "collateral";
      std::filesystem::create_directories(collateral_dir);
      for (const auto& [name, bytes] : tdx_->collateral().files) write_file(collateral_dir / name, bytes);
      extra = {"--collateral", collateral_dir.string()};
      anchors = tdx_->anchors();
    } else {
      snp_ = std::make_unique<test::SnpTestSigner>(test::SnpTestSigner::create());
      test::SnpReportOptions report;
      if (debug) report.policy |= 1ULL << 19;  // DEBUG allowed
      maker = [signer = snp_.get(), report](const protocol::ReportData& rd) {
        std::array<std::uint8_t, 64> data{};
        std::copy(rd.begin(), rd.end(), data.begin());
        return signer->report(data, report);
      };
      auxblob = snp_auxblob(snp_->collateral());  // no --collateral: the certificates come from the host
      anchors = snp_->anchors();
    }
    std::string pem;
    for (const auto& root : anchors.pem_roots) pem += root;
    std::ofstream(dir_.file("test_root.pem")) << pem;
    anchors_ = anchors;
    enclave_ = std::make_unique<FakeHardwareEnclave>(dir_, kind, std::move(maker), extra, auxblob);

    auto [status, output] = run_rvenc({"keys", "create", "--db", dir_.file("rvenc.db"), "--name", "hw", "--test"});
    if (status != 0) throw std::runtime_error(output);
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);)
      if (line.starts_with("sk_test_")) api_key_ = line;
    gateway_ = std::make_unique<ChildProcess>(std::vector<std::string>{
        test::rvenc_binary(), "gateway", "--listen", "127.0.0.1:0", "--enclave", enclave_->url, "--db",
        dir_.file("rvenc.db"), "--enclave-token-file", dir_.file("gateway.token")});
    auto url = gateway_->wait_for_url();
    if (!url) throw std::runtime_error("gateway did not start:\n" + gateway_->output());
    gateway_url_ = *url;
  }
  ~HardwareStack() {
    gateway_.reset();
    enclave_.reset();
  }

  [[nodiscard]] ClientOptions options(bool test_root = true) const {
    ClientOptions options;
    options.api_key = api_key_;
    options.base_url = gateway_url_;
    if (test_root) options.trust_anchors = anchors_;
    return options;
  }
  [[nodiscard]] std::vector<std::string> chat_args(const std::string& prompt) const {
    return {"chat", "--gateway", gateway_url_, "--api-key", api_key_, "-m", "rvenc-demo",
            "--attestation-trust-root", dir_.file("test_root.pem"), prompt};
  }
  [[nodiscard]] std::string file(const std::string& name) const { return dir_.file(name); }
  [[nodiscard]] const std::string& gateway_url() const { return gateway_url_; }
  [[nodiscard]] const std::string& api_key() const { return api_key_; }
  [[nodiscard]] std::int64_t signer_valid_until() const { return tdx_ ? tdx_->not_after() : snp_->not_after(); }
  [[nodiscard]] TsmKind kind() const { return kind_; }

 private:
  TsmKind kind_;
  test::TempDir dir_;
  std::unique_ptr<test::TdxTestSigner> tdx_;
  std::unique_ptr<test::SnpTestSigner> snp_;
  att::TrustAnchors anchors_;
  std::unique_ptr<FakeHardwareEnclave> enclave_;
  std::unique_ptr<ChildProcess> gateway_;
  std::string api_key_, gateway_url_;
};

json::object request(std::string_view prompt) {
  return {{"model", "rvenc-demo"}, {"messages", json::array{json::object{{"role", "user"}, {"content", prompt}}}}};
}

std::string content_of(const json::object& completion) {
  return std::string(completion.at("choices").as_array().at(0).as_object().at("message").as_object().at("content").as_string());
}

class HardwareEndToEnd : public ::testing::TestWithParam<TsmKind> {};

TEST_P(HardwareEndToEnd, SdkChatAndProxyVerifyTheEvidenceUnderTheTestRoot) {
  HardwareStack stack(GetParam(), false);
  // SDK: attestation verified (evidence, collateral from the document), then a chat completion.
  auto client = create_client(stack.options());
  ASSERT_TRUE(client) << client.error().to_string();
  auto document = client->attest();
  ASSERT_TRUE(document) << document.error().to_string();
  EXPECT_EQ(document->provider, GetParam() == TsmKind::tdx ? "tdx" : "sev-snp");
  EXPECT_FALSE(document->collateral.empty());
  auto completion = client->chat.completions.create(request("Hello hardware"));
  ASSERT_TRUE(completion) << completion.error().to_string();
  EXPECT_NE(content_of(*completion).find(kDemoGreeting), std::string::npos);
  // Keys are trusted no longer than the evidence's certificates and collateral.
  const auto keys = client->encryption_keys();
  ASSERT_TRUE(keys && keys->not_after);
  EXPECT_LE(*keys->not_after, stack.signer_valid_until());

  // rvenc chat with the test root given on purpose, announced on stderr.
  auto [status, output] = run_rvenc(stack.chat_args("Hello"));
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find(kDemoGreeting), std::string::npos) << output;
  EXPECT_NE(output.find("WARNING: trusting the test root"), std::string::npos) << output;

  // rvenc attest prints what to pin.
  auto [attest_status, attest_output] =
      run_rvenc({"attest", "--gateway", stack.gateway_url(), "--attestation-trust-root", stack.file("test_root.pem")});
  EXPECT_EQ(attest_status, 0) << attest_output;
  EXPECT_NE(attest_output.find("not pinned"), std::string::npos) << attest_output;

  // rvenc proxy: a request through it.
  ChildProcess proxy({test::rvenc_binary(), "proxy", "--listen", "127.0.0.1:0", "--gateway", stack.gateway_url(),
                      "--attestation-trust-root", stack.file("test_root.pem")});
  auto proxy_url = proxy.wait_for_url();
  ASSERT_TRUE(proxy_url) << proxy.output();
  http::Fields headers;
  headers.set(boost::beast::http::field::authorization, "Bearer " + stack.api_key());
  headers.set(boost::beast::http::field::content_type, "application/json");
  auto answer = http::fetch("POST", *proxy_url + "/v1/chat/completions", json::serialize(request("Hi proxy")), headers);
  ASSERT_TRUE(answer) << answer.error().to_string();
  EXPECT_EQ(answer->result_int(), 200U) << answer->body();
  EXPECT_NE(answer->body().find(kDemoGreeting), std::string::npos) << answer->body();
}

TEST_P(HardwareEndToEnd, RefusedUnderThePinnedRootsAndOutsideThePolicy) {
  HardwareStack stack(GetParam(), false);
  // The vendors' pinned roots (no test root): the test chain does not reach them.
  auto pinned = attest(stack.options(false));
  ASSERT_FALSE(pinned);
  EXPECT_EQ(pinned.error().code, Errc::attestation_failed);
  EXPECT_NE(pinned.error().message.find("cert_chain"), std::string::npos) << pinned.error().message;
  auto [status, output] = run_rvenc({"chat", "--gateway", stack.gateway_url(), "--api-key", stack.api_key(), "-m",
                                     "rvenc-demo", "Hello"});
  EXPECT_EQ(status, 4) << output;

  // A policy whose measurements do not include this enclave's: refused at `measurement`.
  std::ofstream(stack.file("policy.json"))
      << R"({"tdx": {"mrtd": [")" << std::string(96, '0') << R"("]}, "sevSnp": {"measurement": [")"
      << std::string(96, '0') << R"("]}})";
  auto args = stack.chat_args("Hello");
  args.insert(args.end() - 1, {"--attestation-policy", stack.file("policy.json")});
  auto [refused, refused_output] = run_rvenc(args);
  EXPECT_EQ(refused, 4) << refused_output;
  EXPECT_NE(refused_output.find("measurement"), std::string::npos) << refused_output;
}

TEST_P(HardwareEndToEnd, ADebugTeeIsRefusedByDefaultAndAcceptedOnlyByPolicy) {
  HardwareStack stack(GetParam(), true);
  auto refused = attest(stack.options());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("debug"), std::string::npos) << refused.error().message;
  auto options = stack.options();
  options.hardware_policy.allow_debug = true;
  auto allowed = attest(options);
  EXPECT_TRUE(allowed) << allowed.error().to_string();
}

INSTANTIATE_TEST_SUITE_P(Providers, HardwareEndToEnd, ::testing::Values(TsmKind::tdx, TsmKind::sev_snp),
                         [](const auto& instance) { return instance.param == TsmKind::tdx ? "Tdx" : "SevSnp"; });

}  // namespace
}  // namespace rvenc::client
