#include "client/pigeon_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>

namespace pigeon::client {

int ConnectLoopback(uint16_t port, int source_index) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  if (source_index > 0) {
    // From 127.0.0.(1 + source_index): ephemeral ports are per source address.
    // The port is picked at connect(), by the whole 4-tuple: a bind() that
    // picks it reserves it for every destination, and the bench's closed
    // sockets, in TIME_WAIT for a minute, then starve later runs of ports.
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000001 + static_cast<uint32_t>(source_index));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0) {
      ::close(fd);
      return -1;
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

// ---- TLS ---------------------------------------------------------------------------

namespace {

// The TLS sessions of open connections, by socket (UseTls).
struct TlsClient {
  std::mutex mu;
  SSL_CTX* ctx = nullptr;
  std::unordered_map<int, SSL*> sessions;

  SSL* Find(int fd) {
    std::lock_guard lock(mu);
    auto it = sessions.find(fd);
    return it == sessions.end() ? nullptr : it->second;
  }
};
TlsClient& Tls() {
  static TlsClient* t = new TlsClient;  // never destroyed: used until the process ends
  return *t;
}

std::string OpenSslErrors() {
  std::string out;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    out += out.empty() ? "" : "; ";
    out += buf;
  }
  return out;
}

}  // namespace

SSL* NewTlsSession(int fd) {
  auto& tls = Tls();
  SSL* ssl;
  {
    std::lock_guard lock(tls.mu);
    if (!tls.ctx) return nullptr;
    ssl = SSL_new(tls.ctx);
  }
  SSL_set_fd(ssl, fd);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), "127.0.0.1");
  SSL_set_connect_state(ssl);
  return ssl;
}

int OpenConnection(uint16_t port, int source_index) {
  int fd = ConnectLoopback(port, source_index);
  if (fd < 0) return -1;
  SSL* ssl = NewTlsSession(fd);
  if (!ssl) return fd;
  auto& tls = Tls();
  ERR_clear_error();
  if (SSL_connect(ssl) != 1) {
    std::string why = OpenSslErrors();
    SSL_free(ssl);
    ::close(fd);
    throw std::runtime_error("TLS handshake failed: " + why);
  }
  std::lock_guard lock(tls.mu);
  tls.sessions[fd] = ssl;
  return fd;
}

void CloseConnection(int fd) {
  auto& tls = Tls();
  SSL* ssl = nullptr;
  {
    std::lock_guard lock(tls.mu);
    auto it = tls.sessions.find(fd);
    if (it != tls.sessions.end()) {
      ssl = it->second;
      tls.sessions.erase(it);
    }
  }
  // close_notify: a session freed without it is marked not resumable.
  if (ssl) SSL_shutdown(ssl);
  SSL_free(ssl);
  ::close(fd);
}

SSL* TlsSessionOf(int fd) { return Tls().Find(fd); }

void ConnectionWrite(int fd, const std::string& s) {
  SSL* ssl = Tls().Find(fd);
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n;
    if (ssl) {
      size_t put = 0;
      ERR_clear_error();
      n = SSL_write_ex(ssl, s.data() + off, s.size() - off, &put) == 1 ? static_cast<ssize_t>(put)
                                                                       : -1;
      if (n < 0) throw std::runtime_error("TLS write failed: " + OpenSslErrors());
    } else {
      n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    }
    if (n <= 0) throw std::runtime_error("send failed: " + std::string(strerror(errno)));
    off += static_cast<size_t>(n);
  }
}

ssize_t ConnectionRead(int fd, char* buf, size_t len, int timeout_ms) {
  SSL* ssl = Tls().Find(fd);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    if (!ssl || SSL_pending(ssl) == 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      deadline - std::chrono::steady_clock::now())
                      .count();
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left))) <= 0) return -2;
    }
    if (!ssl) return ::recv(fd, buf, len, 0);
    size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(ssl, buf, len, &got) == 1) return static_cast<ssize_t>(got);
    int e = SSL_get_error(ssl, 0);
    ERR_clear_error();
    // A record that was not data (a session ticket) was read: wait again.
    if (e == SSL_ERROR_WANT_READ) continue;
    return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -1;
  }
}

void UseTls(const std::string& ca_file) {
  auto& tls = Tls();
  SSL_CTX* ctx = nullptr;
  if (!ca_file.empty()) {
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1)
      throw std::runtime_error("TLS: cannot load " + ca_file + ": " + OpenSslErrors());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    // A read that meets a record that is not data returns, so that reads keep
    // their timeouts; non-blocking users (pigeon-bench) write part of a
    // buffer that moves.
    SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  std::lock_guard lock(tls.mu);
  SSL_CTX_free(tls.ctx);  // its open sessions hold their own reference
  tls.ctx = ctx;
}

void WriteSelfSignedCertificate(const std::string& cert_file, const std::string& key_file,
                                int days) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  if (!key || !x) throw std::runtime_error("TLS: key generation failed: " + OpenSslErrors());
  X509_set_version(x, 2);
  static std::atomic<long> serial{1};
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++ + (::getpid() << 8));
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(days) * 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("pigeon test"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, "IP:127.0.0.1, DNS:localhost"},
                            std::pair{NID_basic_constraints, "critical, CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value);
    if (!ext) throw std::runtime_error("TLS: extension: " + OpenSslErrors());
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x, key, EVP_sha256()) == 0)
    throw std::runtime_error("TLS: signing failed: " + OpenSslErrors());
  auto write = [](const std::string& path, auto&& emit) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) throw std::runtime_error("cannot write " + path);
    bool ok = emit(f) == 1;
    std::fclose(f);
    if (!ok) throw std::runtime_error("TLS: cannot write PEM to " + path);
  };
  write(cert_file, [&](FILE* f) { return PEM_write_X509(f, x); });
  write(key_file, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  });
  X509_free(x);
  EVP_PKEY_free(key);
}

int64_t CertificateNotAfter(const std::string& cert_file) {
  FILE* f = std::fopen(cert_file.c_str(), "r");
  if (!f) throw std::runtime_error("cannot read " + cert_file);
  X509* x = PEM_read_X509(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (!x) throw std::runtime_error("not a PEM certificate: " + cert_file);
  std::tm tm{};
  ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
  X509_free(x);
  return static_cast<int64_t>(timegm(&tm));
}

namespace {

bool PortFree(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  ::close(fd);
  return ok;
}

// Parses one HTTP response out of `buf` if complete.
bool ParseResponse(const std::string& buf, HttpResult* r, size_t* used) {
  auto end = buf.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  std::istringstream head(buf.substr(0, end));
  std::string line;
  std::getline(head, line);
  r->status = std::stoi(line.substr(9, 3));
  size_t content_length = 0;
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string k = line.substr(0, colon);
    for (auto& c : k) c = static_cast<char>(std::tolower(c));
    std::string v = line.substr(colon + 1);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    r->headers[k] = v;
    if (k == "content-length") content_length = std::stoul(v);
  }
  if (buf.size() < end + 4 + content_length) return false;
  r->body = buf.substr(end + 4, content_length);
  *used = end + 4 + content_length;
  boost::system::error_code ec;
  r->json = json::parse(r->body, ec);
  if (ec) r->json = nullptr;
  return true;
}

HttpResult ReadResponse(int fd, std::string* leftover) {
  std::string buf;
  char tmp[65536];
  HttpResult r;
  size_t used = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!ParseResponse(buf, &r, &used)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) throw std::runtime_error("HTTP response timed out");
    ssize_t n = ConnectionRead(fd, tmp, sizeof(tmp), static_cast<int>(left));
    if (n == 0 || n == -1) throw std::runtime_error("connection closed before the response");
    if (n > 0) buf.append(tmp, static_cast<size_t>(n));
  }
  if (leftover) *leftover = buf.substr(used);
  return r;
}

}  // namespace

// ---- TestServer ---------------------------------------------------------------------

namespace {

// fork + execv of `argv_s`; the child's stderr (and stdout if asked) goes to
// `log` (opened with `mode_flag`: O_APPEND or O_TRUNC), and it dies with us.
pid_t Spawn(std::vector<std::string> argv_s, const std::string& log, int mode_flag,
            bool also_stdout) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a killed test leaves no pigeond behind
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | mode_flag, 0644);
    if (also_stdout) ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

TestServer::TestServer(std::vector<std::string> extra_args, unsigned network_threads)
    : args_(std::move(extra_args)), network_threads_(network_threads) {
  char tmpl[] = "/tmp/pigeon-test.XXXXXX";
  dir_ = ::mkdtemp(tmpl);
}

TestServer::~TestServer() {
  // A pigeond that ended by itself while its test ran (a crash, an abort, a
  // sanitizer's halt): its log says why, and goes with the data directory,
  // so it is shown here (ctest prints a failed test's output).
  int status = 0;
  if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    std::fprintf(stderr, "pigeond (port %u) ended by itself (%s %d); its log:\n%s\n", port_,
                 WIFSIGNALED(status) ? "signal" : "exit status",
                 WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), log().c_str());
  }
  if (pid_ > 0) Kill();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string TestServer::log() const {
  std::ifstream f(dir_ + "/pigeond.log");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void TestServer::Start() {
  static std::mt19937 rng(
      static_cast<unsigned>(::getpid()) ^
      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (port_ == 0 || attempt > 0) {
      // Below 32768: outside the kernel's range for outgoing connections.
      do {
        port_ = static_cast<uint16_t>(20000 + rng() % 12000);
      } while (!PortFree(port_));
    }
    std::vector<std::string> argv_s = {PIGEOND_PATH, "--listen",
                                       "127.0.0.1:" + std::to_string(port_), "--data-dir",
                                       dir_ + "/data"};
    // Cheap password hashing keeps tests fast (the default cost is tested by
    // the unit tests), unless a test sets its own.
    if (std::find(args_.begin(), args_.end(), "--pwhash-opslimit") == args_.end())
      argv_s.insert(argv_s.end(), {"--pwhash-opslimit", "1", "--pwhash-memlimit-kib", "1024"});
    if (network_threads_) {
      argv_s.push_back("--network-threads");
      argv_s.push_back(std::to_string(network_threads_));
    }
    for (auto& a : args_) argv_s.push_back(a);
    pid_ = Spawn(argv_s, dir_ + "/pigeond.log", O_APPEND, /*also_stdout=*/true);
    // Wait for /healthz, or for the process to die (port taken: try another).
    for (int i = 0; i < 600; ++i) {
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      int fd = ConnectLoopback(port_);
      if (fd >= 0) {
        ::close(fd);
        try {
          if (Http(port_, "GET", "/healthz").status == 200) return;
        } catch (...) {
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (pid_ > 0) {
      Kill();
      throw std::runtime_error("pigeond did not become healthy; log:\n" + log());
    }
  }
  throw std::runtime_error("pigeond would not start; log:\n" + log());
}

void TestServer::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

int TestServer::Terminate() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  for (int i = 0; i < 1500; ++i) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Kill();
  return -1;
}

// ---- HTTP ---------------------------------------------------------------------------

HttpResult RawHttp(uint16_t port, const std::string& raw, int source_index) {
  int fd = OpenConnection(port, source_index);
  if (fd < 0) throw std::runtime_error("connect failed");
  try {
    try {
      ConnectionWrite(fd, raw);
    } catch (const std::exception&) {
      // The server may answer (413, 400) and close before reading everything.
    }
    auto r = ReadResponse(fd, nullptr);
    CloseConnection(fd);
    return r;
  } catch (...) {
    CloseConnection(fd);
    throw;
  }
}

HttpResult Http(uint16_t port, const std::string& method, const std::string& target,
                const std::string& body, const std::string& token) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    req +=
        "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "Connection: close\r\n\r\n" + body;
  return RawHttp(port, req);
}

Account Login(uint16_t port, const std::string& user, const std::string& password) {
  json::object su{{"username", user}, {"password", password}};
  auto r = Http(port, "POST", "/api/v1/users", json::serialize(su));
  if (r.status != 201 && r.status != 409) throw std::runtime_error("sign-up failed: " + r.body);
  r = Http(port, "POST", "/api/v1/sessions", json::serialize(su));
  if (r.status != 200) throw std::runtime_error("login failed: " + r.body);
  auto& o = r.json.as_object();
  return Account{std::string(o.at("user_id").as_string()), std::string(o.at("token").as_string()),
                 std::string(o.at("device_id").as_string())};
}

std::optional<double> MetricIn(const std::string& body, std::string_view name) {
  std::string line = "\n" + std::string(name) + " ";
  size_t at = body.find(line);
  if (at == std::string::npos) return std::nullopt;
  return std::strtod(body.c_str() + at + line.size(), nullptr);
}

std::string OpenConversation(uint16_t port, const Account& a, const std::string& peer) {
  auto r = Http(port, "POST", "/api/v1/conversations",
                json::serialize(json::object{{"peer", peer}}), a.token);
  if (r.status != 200) throw std::runtime_error("conversation failed: " + r.body);
  return std::string(r.json.at("conversation_id").as_string());
}

std::vector<Account> SeedUsers(const std::string& data_dir, const std::string& prefix, int count,
                               const std::string& password, int start) {
  std::string out = data_dir + ".seed.tsv", err = data_dir + ".seed.err";
  std::vector<std::string> argv_s = {PIGEOND_PATH,
                                     "admin",
                                     "seed-users",
                                     "--data-dir",
                                     data_dir,
                                     "--prefix",
                                     prefix,
                                     "--count",
                                     std::to_string(count),
                                     "--start",
                                     std::to_string(start),
                                     "--password",
                                     password,
                                     "--out",
                                     out,
                                     "--pwhash-opslimit",
                                     "1",
                                     "--pwhash-memlimit-kib",
                                     "1024"};
  pid_t pid = Spawn(argv_s, err, O_TRUNC, /*also_stdout=*/false);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::ifstream errf(err);
  std::string message((std::istreambuf_iterator<char>(errf)), std::istreambuf_iterator<char>());
  std::filesystem::remove(err);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("seed-users failed: " + message);
  std::vector<Account> accounts;
  std::ifstream f(out);
  std::string user, device, token;
  while (f >> user >> device >> token) accounts.push_back(Account{user, token, device});
  std::filesystem::remove(out);
  if (accounts.size() != static_cast<size_t>(count))
    throw std::runtime_error("seed-users wrote " + std::to_string(accounts.size()) + " accounts");
  return accounts;
}

// ---- WebSocket --------------------------------------------------------------------

std::unique_ptr<WsClient> WsClient::Connect(uint16_t port, const std::string& token,
                                            const std::string& since, int* status,
                                            bool token_in_query) {
  int fd = OpenConnection(port);
  if (fd < 0) throw std::runtime_error("connect failed");
  std::string target = "/api/v1/ws";
  std::string sep = "?";
  if (token_in_query) {
    target += sep + "token=" + token;
    sep = "&";
  }
  if (!since.empty()) target += sep + "since=" + since;
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (!token_in_query && !token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  req +=
      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
  ConnectionWrite(fd, req);
  std::string leftover;
  auto r = ReadResponse(fd, &leftover);
  if (status) *status = r.status;
  if (r.status != 101) {
    CloseConnection(fd);
    return nullptr;
  }
  if (r.headers["sec-websocket-accept"] != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
    CloseConnection(fd);
    throw std::runtime_error("bad Sec-WebSocket-Accept");
  }
  std::unique_ptr<WsClient> c(new WsClient(fd));
  c->in_ = std::move(leftover);
  return c;
}

WsClient::~WsClient() { CloseConnection(fd_); }

void WsClient::SendFrame(uint8_t opcode, const std::string& payload) {
  static thread_local std::mt19937 rng(std::random_device{}());
  uint32_t m = rng();
  uint8_t mask[4];
  std::memcpy(mask, &m, 4);
  std::string f;
  ws::AppendFrame(f, opcode, payload, mask);
  SendBytes(f);
}

void WsClient::SendText(const std::string& text) { SendFrame(ws::kText, text); }

void WsClient::SendBytes(const std::string& bytes) { ConnectionWrite(fd_, bytes); }

bool WsClient::Pump(int timeout_ms) {
  if (closed_) return false;
  // Frames already buffered first.
  auto consume = [&] {
    size_t used = reader_.Consume(in_.data(), in_.size(), [&](const ws::Event& ev) {
      using K = ws::Event::Kind;
      if (ev.kind == K::kText) {
        boost::system::error_code ec;
        auto v = json::parse(std::string(ev.payload), ec);
        if (ec || !v.is_object())
          throw std::runtime_error("server sent non-object text: " + std::string(ev.payload));
        messages_.push_back(std::move(v.as_object()));
      } else if (ev.kind == K::kClose) {
        close_code_ = ev.code;
        closed_ = true;
      } else if (ev.kind == K::kError) {
        throw std::runtime_error("server sent a bad frame");
      } else if (ev.kind == K::kPing) {
        SendFrame(ws::kPong, std::string(ev.payload));
      }
    });
    in_.erase(0, used);
  };
  consume();
  if (!messages_.empty() || closed_) return true;
  char buf[65536];
  ssize_t n = ConnectionRead(fd_, buf, sizeof(buf), timeout_ms);
  if (n == -2) return false;
  if (n <= 0) {
    closed_ = true;
    if (!close_code_) close_code_ = 0;
    return false;
  }
  in_.append(buf, static_cast<size_t>(n));
  consume();
  return true;
}

std::optional<json::object> WsClient::Next(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (messages_.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0 || closed_) return std::nullopt;
    Pump(static_cast<int>(left));
  }
  auto m = std::move(messages_.front());
  messages_.pop_front();
  return m;
}

std::optional<json::object> WsClient::NextOfType(const std::string& type, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return std::nullopt;
    auto m = Next(static_cast<int>(left));
    if (!m) return std::nullopt;
    if (m->at("type").as_string() == type) return m;
  }
}

std::optional<uint16_t> WsClient::WaitClose(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!closed_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return std::nullopt;
    messages_.clear();
    Pump(static_cast<int>(left));
  }
  return close_code_;
}

}  // namespace pigeon::client
