// Push notifications against fake APNs, FCM and webhook servers (Node, on
// loopback, TLS + HTTP/2) that verify what the real providers verify: the
// provider JWT's signature and claims, the headers, FCM's token exchange, the
// webhook's HMAC signature.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "client/pigeon_client.h"

namespace pigeon::test {
namespace {

using namespace ::pigeon::client;

std::string S(const json::value& v) { return std::string(v.as_string()); }

constexpr const char* kSecret = "webhook-test-secret";

// The fake providers, as a child process.
class FakeProviders {
 public:
  FakeProviders() {
    char tmpl[] = "/tmp/pigeon-fake-push.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
      std::string script = std::string(PIGEON_SOURCE_DIR) + "/tests/fake_push/fake_providers.js";
      ::execlp("node", "node", script.c_str(), dir_.c_str(), kSecret, nullptr);
      _exit(127);
    }
    for (int i = 0; i < 500 && !std::filesystem::exists(dir_ + "/ports.json"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::ifstream f(dir_ + "/ports.json");
    std::stringstream ss;
    ss << f.rdbuf();
    ports_ = json::parse(ss.str()).as_object();
  }
  ~FakeProviders() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    std::filesystem::remove_all(dir_);
  }
  int Port(const char* name) const {
    return static_cast<int>(ports_.at(name).to_number<int64_t>());
  }
  std::string Url(const char* name) const {
    return std::string(name == std::string("webhook") ? "http" : "https") +
           "://127.0.0.1:" + std::to_string(Port(name));
  }
  // pigeond's options to use these fakes.
  std::vector<std::string> Args(int64_t delay_ms = 300) const {
    return {"--push-ca-file",
            dir_ + "/cert.pem",
            "--apns-base-url",
            Url("apns"),
            "--apns-key-file",
            dir_ + "/apns.p8",
            "--apns-key-id",
            S(ports_.at("key_id")),
            "--apns-team-id",
            S(ports_.at("team_id")),
            "--apns-topic",
            S(ports_.at("topic")),
            "--fcm-base-url",
            Url("fcm"),
            "--fcm-credentials-file",
            dir_ + "/fcm.json",
            "--webhook-secret",
            kSecret,
            "--webhook-allow-http",
            "true",
            "--webhook-allow-private",
            "true",  // the fake is on loopback
            "--push-delay-ms",
            std::to_string(delay_ms),
            "--push-min-interval-ms",
            "3000"};
  }
  json::object Log() const {
    auto r = Http(static_cast<uint16_t>(Port("control")), "GET", "/log");
    return r.json.as_object();
  }
  // Entries of `provider`'s log for `token` (webhook: for the hook's name).
  std::vector<json::object> For(const char* provider, const std::string& token) const {
    std::vector<json::object> out;
    const json::object log = Log();  // kept alive for the loop
    for (auto& e : log.at(provider).as_array())
      if (S(e.at(provider == std::string("webhook") ? "name" : "token")) == token)
        out.push_back(e.as_object());
    return out;
  }
  // Waits until `provider` has at least `n` entries for `token`.
  std::vector<json::object> WaitFor(const char* provider, const std::string& token, size_t n,
                                    int ms = 8000) const {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      auto got = For(provider, token);
      if (got.size() >= n || std::chrono::steady_clock::now() > deadline) return got;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void ExpectNoVerificationErrors() const {
    auto errors = Log().at("errors").as_array();
    EXPECT_TRUE(errors.empty()) << json::serialize(errors);
  }

 private:
  std::string dir_;
  pid_t pid_;
  json::object ports_;
};

// A pigeond wired to the fakes, with alice, bob and their conversation.
struct Scene {
  void Start(std::vector<std::string> args) {
    server = std::make_unique<TestServer>(std::move(args));
    server->Start();
    alice = Login(port(), "alice");
    bob = Login(port(), "bob");
    conv = OpenConversation(port(), alice, "bob");
  }
  uint16_t port() const { return server->port(); }
  int Register(const Account& a, const std::string& provider, const std::string& token,
               const std::string& endpoint = "") {
    json::object body{{"provider", provider}, {"token", token}};
    if (!endpoint.empty()) body["endpoint"] = endpoint;
    return Http(port(), "PUT", "/api/v1/devices/current/push", json::serialize(body), a.token)
        .status;
  }
  // n messages from alice to bob.
  void Send(int n, const std::string& body = "the secret plans") {
    auto ws = WsClient::Connect(port(), alice.token);
    for (int i = 0; i < n; ++i)
      ws->SendJson(json::object{{"type", "send"},
                                {"conversation_id", conv},
                                {"client_msg_id", "m" + std::to_string(counter++)},
                                {"body", body}});
    for (int i = 0; i < n; ++i) ASSERT_TRUE(ws->NextOfType("ack"));
  }
  std::string Metrics() { return Http(port(), "GET", "/metrics").body; }

  std::unique_ptr<TestServer> server;
  Account alice, bob;
  std::string conv;
  int counter = 0;
};

class Push : public ::testing::Test, protected Scene {
 protected:
  void SetUp() override { Start(fakes_.Args()); }
  FakeProviders fakes_;
};

TEST_F(Push, AnOfflineDeviceGetsExactlyOnePushForABurst) {
  ASSERT_EQ(Register(bob, "apns", "tok-bob"), 204);
  Send(5);
  auto got = fakes_.WaitFor("apns", "tok-bob", 1);
  ASSERT_EQ(got.size(), 1u);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  got = fakes_.For("apns", "tok-bob");
  ASSERT_EQ(got.size(), 1u);
  auto payload = json::serialize(got[0].at("payload"));
  // No body and no sender by default: only what wakes the app.
  EXPECT_EQ(payload.find("secret plans"), std::string::npos) << payload;
  EXPECT_EQ(payload.find("alice"), std::string::npos) << payload;
  EXPECT_EQ(got[0].at("payload").at("aps").at("badge").to_number<int64_t>(), 5);
  EXPECT_TRUE(got[0].at("payload").as_object().contains("cursor"));
  EXPECT_EQ(S(got[0].at("headers").at("apns-push-type")), "alert");
  fakes_.ExpectNoVerificationErrors();
  EXPECT_NE(Metrics().find("pigeon_push_sent_total{provider=\"apns\"} 1"), std::string::npos);
}

TEST_F(Push, AnOnlineDeviceAndTheSendersOwnDevicesGetNone) {
  ASSERT_EQ(Register(bob, "apns", "tok-online"), 204);
  ASSERT_EQ(Register(alice, "apns", "tok-sender"), 204);
  auto wb = WsClient::Connect(port(), bob.token);
  Send(2);
  ASSERT_TRUE(wb->NextOfType("message"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_TRUE(fakes_.For("apns", "tok-online").empty());
  EXPECT_TRUE(fakes_.For("apns", "tok-sender").empty());
}

TEST_F(Push, FcmExchangesAServiceAccountJwtForAnAccessToken) {
  ASSERT_EQ(Register(bob, "fcm", "fcm-bob"), 204);
  Send(1);
  auto got = fakes_.WaitFor("fcm", "fcm-bob", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(S(got[0].at("message").at("data").at("type")), "pigeon.wake");
  EXPECT_FALSE(got[0].at("message").as_object().contains("notification"));  // no preview
  EXPECT_EQ(fakes_.Log().at("tokens").as_array().size(), 1u);
  // The access token is cached: another push needs no new exchange.
  auto bob2 = Login(port(), "bob");
  ASSERT_EQ(Register(bob2, "fcm", "fcm-bob2"), 204);
  Send(1);
  EXPECT_EQ(fakes_.WaitFor("fcm", "fcm-bob2", 1).size(), 1u);
  EXPECT_EQ(fakes_.Log().at("tokens").as_array().size(), 1u);
  fakes_.ExpectNoVerificationErrors();
}

TEST_F(Push, DeadTokensArePruned) {
  ASSERT_EQ(Register(bob, "apns", "gone-apns"), 204);
  auto bob2 = Login(port(), "bob");
  ASSERT_EQ(Register(bob2, "fcm", "gone-fcm"), 204);
  Send(1);
  EXPECT_EQ(fakes_.WaitFor("apns", "gone-apns", 1).size(), 1u);
  EXPECT_EQ(fakes_.WaitFor("fcm", "gone-fcm", 1).size(), 1u);
  for (int i = 0;
       i < 100 && Metrics().find("pigeon_push_tokens_pruned_total 2") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_NE(Metrics().find("pigeon_push_tokens_pruned_total 2"), std::string::npos);
  // The registrations are gone: nothing more is sent to them.
  std::this_thread::sleep_for(std::chrono::milliseconds(3200));
  Send(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(fakes_.For("apns", "gone-apns").size(), 1u);
  EXPECT_EQ(fakes_.For("fcm", "gone-fcm").size(), 1u);
}

TEST_F(Push, BusyAndFailingProvidersAreRetried) {
  ASSERT_EQ(Register(bob, "apns", "busy-apns"), 204);  // 429 + Retry-After: 1, then fine
  auto bob2 = Login(port(), "bob");
  ASSERT_EQ(Register(bob2, "fcm", "flaky-fcm"), 204);  // 503, then fine
  Send(1);
  auto apns = fakes_.WaitFor("apns", "busy-apns", 2, 15000);
  ASSERT_EQ(apns.size(), 2u);
  EXPECT_EQ(S(apns[0].at("outcome")), "busy");
  EXPECT_EQ(S(apns[1].at("outcome")), "ok");
  // Retry-After was honoured.
  EXPECT_GE(apns[1].at("at").to_number<int64_t>() - apns[0].at("at").to_number<int64_t>(), 1000);
  auto fcm = fakes_.WaitFor("fcm", "flaky-fcm", 2, 15000);
  ASSERT_EQ(fcm.size(), 2u);
  EXPECT_EQ(S(fcm[1].at("outcome")), "ok");
  EXPECT_NE(Metrics().find("pigeon_push_retried_total"), std::string::npos);
  EXPECT_EQ(Metrics().find("pigeon_push_retried_total 0"), std::string::npos);
}

TEST_F(Push, WebhooksCarryAValidSignature) {
  ASSERT_EQ(Register(bob, "webhook", "", fakes_.Url("webhook") + "/hook/bob"), 204);
  Send(1);
  auto got = fakes_.WaitFor("webhook", "bob", 1);
  ASSERT_EQ(got.size(), 1u);  // the fake only logs what it verified
  EXPECT_EQ(S(got[0].at("body").at("type")), "pigeon.wake");
  EXPECT_EQ(got[0].at("body").as_object().count("body"), 0u);
  fakes_.ExpectNoVerificationErrors();
}

TEST_F(Push, RegistrationIsValidatedAndCanBeRemoved) {
  EXPECT_EQ(Register(bob, "carrier-pigeon", "t"), 400);
  EXPECT_EQ(Register(bob, "apns", ""), 400);
  EXPECT_EQ(Register(bob, "apns", "a/b"), 400);
  EXPECT_EQ(Register(bob, "webhook", "", "ftp://example"), 400);
  EXPECT_EQ(
      Http(port(), "PUT", "/api/v1/devices/current/push", R"({"provider":"apns","token":"t"})")
          .status,
      401);
  ASSERT_EQ(Register(bob, "apns", "tok-removed"), 204);
  EXPECT_EQ(Http(port(), "DELETE", "/api/v1/devices/current/push", "", bob.token).status, 204);
  Send(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_TRUE(fakes_.For("apns", "tok-removed").empty());
  // A new registration replaces the old one.
  ASSERT_EQ(Register(bob, "apns", "tok-old"), 204);
  ASSERT_EQ(Register(bob, "fcm", "tok-new"), 204);
  Send(1);
  EXPECT_EQ(fakes_.WaitFor("fcm", "tok-new", 1).size(), 1u);
  EXPECT_TRUE(fakes_.For("apns", "tok-old").empty());
}

TEST(PushCrash, APushCommittedBeforeSigkillIsSentAfterRestart) {
  FakeProviders fakes;
  Scene scene;
  scene.Start(fakes.Args(/*delay_ms=*/4000));  // long enough to kill before the push
  ASSERT_EQ(scene.Register(scene.bob, "apns", "tok-crash"), 204);
  scene.Send(1);
  scene.server->Kill();
  EXPECT_TRUE(fakes.For("apns", "tok-crash").empty());
  scene.server->Start();
  EXPECT_EQ(fakes.WaitFor("apns", "tok-crash", 1, 15000).size(), 1u);
  fakes.ExpectNoVerificationErrors();
}

TEST(PushPreview, PreviewsAreOnlySentWhenConfigured) {
  FakeProviders fakes;
  auto args = fakes.Args();
  args.insert(args.end(), {"--push-preview", "true"});
  Scene scene;
  scene.Start(args);
  ASSERT_EQ(scene.Register(scene.bob, "fcm", "tok-preview"), 204);
  scene.Send(1, "hello bob");
  auto got = fakes.WaitFor("fcm", "tok-preview", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(S(got[0].at("message").at("notification").at("body")), "hello bob");
  EXPECT_EQ(S(got[0].at("message").at("notification").at("title")), "alice");
}

TEST(PushWebhooks, AnEndpointOnANonPublicAddressIsRefusedUnlessAllowed) {
  FakeProviders fakes;
  auto args = fakes.Args();
  auto allow = std::find(args.begin(), args.end(), "--webhook-allow-private");
  ASSERT_NE(allow, args.end());
  args.erase(allow, allow + 2);  // the default: public addresses only
  Scene scene;
  scene.Start(args);
  const std::string port = std::to_string(fakes.Port("webhook"));
  // An address literal is refused when it is registered.
  for (const std::string& url : std::vector<std::string>{
           "http://127.0.0.1:" + port + "/hook/bob", "http://[::1]:" + port + "/hook/bob",
           "http://localhost:" + port + "/hook/bob", "http://169.254.169.254/latest/meta-data",
           "http://10.0.0.1/hook/bob", "http://[::ffff:127.0.0.1]:" + port + "/hook/bob"}) {
    auto r = Http(scene.port(), "PUT", "/api/v1/devices/current/push",
                  json::serialize(json::object{{"provider", "webhook"}, {"endpoint", url}}),
                  scene.bob.token);
    EXPECT_EQ(r.status, 400) << url;
    EXPECT_NE(r.body.find("public address"), std::string::npos) << r.body;
  }
  // A host that is no literal but reaches loopback all the same ("127.1" is
  // 127.0.0.1 to the resolver) is refused as the push connects, and the
  // registration is dropped like a dead token.
  ASSERT_EQ(scene.Register(scene.bob, "webhook", "", "http://127.1:" + port + "/hook/bob"), 204);
  scene.Send(1);
  for (int i = 0;
       i < 100 && scene.Metrics().find("pigeon_push_tokens_pruned_total 1") == std::string::npos;
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_NE(scene.Metrics().find("pigeon_push_tokens_pruned_total 1"), std::string::npos);
  EXPECT_TRUE(fakes.For("webhook", "bob").empty());
}

}  // namespace
}  // namespace pigeon::test
