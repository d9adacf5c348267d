// pigeon-bench: load generator and meter for pigeond. Speaks the public
// protocol like real devices over loopback, from several processes and
// several 127.0.0.x source addresses (one process may hold 20,000 files here).
//
//   pigeon-bench idle    --sockets 19000           memory per idle authenticated WebSocket
//   pigeon-bench steady  --rates 5000,10000 --users 1000 --duration 10
//                        open-loop 1:1 traffic at each rate in turn; ack and end-to-end
//                        latency; audit of every message; server CPU per message
//   pigeon-bench burst   --messages 20 --users 1000  every user sends N messages at once
//   pigeon-bench catchup --messages 10000          an offline device pulls its feed
//   pigeon-bench reconnect-storm --users 10000 --messages 10
//                        every device reconnects at once with `since` and replays its feed
//   pigeon-bench restart --messages 1000000        SIGKILL with N messages stored, then the
//                                                  time until /readyz answers
//
// By default it starts its own pigeond (fresh data directory, fsync on) with
// its users made by `pigeond admin seed-users`; --port/--pid measure a running
// one instead (users are then signed up through the API, which is slower).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <thread>

#include "client/pigeon_client.h"
#include "flat_json.h"
#include "reference_relay.h"

namespace pigeon::bench {
namespace json = boost::json;
using namespace ::pigeon::client;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- /proc readings -------------------------------------------------------------

// The number after "field:" in a /proc file (kB for memory fields); -1 if absent.
int64_t ProcField(const std::string& file, const std::string& field) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  return -1;
}
int64_t StatusKb(pid_t pid, const std::string& field) {
  return ProcField("/proc/" + std::to_string(pid) + "/status", field);
}
int64_t MeminfoKb(const std::string& field) { return ProcField("/proc/meminfo", field); }

// TCP socket buffer memory, in pages, from /proc/net/sockstat ("TCP: inuse .. mem N").
int64_t SockstatTcpMemPages() {
  std::ifstream f("/proc/net/sockstat");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("TCP:", 0) != 0) continue;
    auto p = line.find(" mem ");
    if (p != std::string::npos) return std::stoll(line.substr(p + 5));
  }
  return -1;
}

// User + system CPU seconds from a /proc/.../stat file (a process's or a
// thread's); 0 if it cannot be read.
double StatCpuSeconds(const std::string& path) {
  std::ifstream f(path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  if (close == std::string::npos || close + 2 > s.size()) return 0;
  std::istringstream rest(s.substr(close + 2));
  std::vector<std::string> fields;
  for (std::string tok; rest >> tok;) fields.push_back(tok);
  if (fields.size() < 13) return 0;
  // fields[0] is field 3 (state); utime is field 14, stime 15.
  double ticks = std::stod(fields[11]) + std::stod(fields[12]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double CpuSeconds(pid_t pid) { return StatCpuSeconds("/proc/" + std::to_string(pid) + "/stat"); }

// What each group of `pid`'s threads has used so far: CPU seconds (user +
// system) and context switches, voluntary (it slept: each one a wake-up to
// come, about 12 µs of CPU on the machine we measure on) and involuntary (it was
// preempted). Groups are thread names with any "-N" suffix dropped and
// RocksDB's "rocksdb:*" threads together: pigeond names its threads pg-net-N,
// pg-commit, pg-worker, pg-password, pg-presence, pg-push.
struct Switches {
  double voluntary = 0;
  double involuntary = 0;
};
struct ThreadUse {
  double cpu_s = 0;
  Switches switches;
};
std::map<std::string, ThreadUse> ThreadUsage(pid_t pid) {
  std::map<std::string, ThreadUse> out;
  std::error_code ec;
  for (auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream cf(task.path() / "comm");
    std::string name;
    std::getline(cf, name);
    if (name.rfind("rocksdb:", 0) == 0) name = "rocksdb";
    auto dash = name.find_last_of('-');
    if (dash != std::string::npos && dash + 1 < name.size() &&
        name.find_first_not_of("0123456789", dash + 1) == std::string::npos)
      name.resize(dash);
    auto& use = out[name];
    use.cpu_s += StatCpuSeconds(task.path() / "stat");
    const std::string status = task.path() / "status";
    use.switches.voluntary += static_cast<double>(ProcField(status, "voluntary_ctxt_switches"));
    use.switches.involuntary +=
        static_cast<double>(ProcField(status, "nonvoluntary_ctxt_switches"));
  }
  return out;
}

// ---- latency summary ----------------------------------------------------------------

struct Summary {
  size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;  // milliseconds
};

Summary Summarize(std::vector<int64_t>& ns) {
  Summary s;
  s.n = ns.size();
  if (ns.empty()) return s;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    size_t i = std::min(ns.size() - 1, static_cast<size_t>(q * static_cast<double>(ns.size())));
    return static_cast<double>(ns[i]) / 1e6;
  };
  s.p50 = at(0.5);
  s.p90 = at(0.9);
  s.p99 = at(0.99);
  s.p999 = at(0.999);
  s.max = static_cast<double>(ns.back()) / 1e6;
  return s;
}

// A log-spaced histogram (10 buckets per decade from 10 µs): [upper bound ms, count].
json::array Histogram(const std::vector<int64_t>& sorted_ns) {
  json::array out;
  size_t i = 0;
  for (double edge_us = 10; i < sorted_ns.size(); edge_us *= std::pow(10.0, 0.1)) {
    size_t n = 0;
    while (i < sorted_ns.size() && static_cast<double>(sorted_ns[i]) / 1e3 <= edge_us) ++i, ++n;
    out.push_back(json::array{edge_us / 1e3, n});
  }
  return out;
}

json::object ToJson(const Summary& s) {
  return {{"count", s.n},    {"p50_ms", s.p50},   {"p90_ms", s.p90},
          {"p99_ms", s.p99}, {"p999_ms", s.p999}, {"max_ms", s.max}};
}

void PrintLatencyHeader() {
  std::printf("                  %8s %8s %8s %8s %8s   (ms)\n", "p50", "p90", "p99", "p99.9",
              "max");
}
void PrintLatency(const char* name, const Summary& s) {
  std::printf("%-17s %8.3f %8.3f %8.3f %8.3f %8.3f\n", name, s.p50, s.p90, s.p99, s.p999, s.max);
}

// End-to-end p99 per window of send time: a stall of the server (a memtable
// flush, say) shows as a run of bad windows rather than as one p99.
struct Timeline {
  double window_s = 0.25;
  std::vector<double> p99_ms;  // per window, from the first send
};

Timeline WindowP99(const std::vector<int64_t>& e2e, const std::vector<int64_t>& sent,
                   double window_s) {
  Timeline t;
  t.window_s = window_s;
  if (e2e.empty() || sent.size() != e2e.size()) return t;
  const int64_t t0 = *std::min_element(sent.begin(), sent.end());
  const auto w = static_cast<int64_t>(window_s * 1e9);
  std::vector<std::vector<int64_t>> windows;
  for (size_t i = 0; i < e2e.size(); ++i) {
    auto k = static_cast<size_t>((sent[i] - t0) / w);
    if (k >= windows.size()) windows.resize(k + 1);
    windows[k].push_back(e2e[i]);
  }
  for (auto& v : windows) t.p99_ms.push_back(Summarize(v).p99);
  return t;
}

void PrintTimeline(const Timeline& t, double over_ms) {
  if (t.p99_ms.empty()) return;
  std::vector<double> sorted = t.p99_ms;
  std::sort(sorted.begin(), sorted.end());
  auto worst = std::max_element(t.p99_ms.begin(), t.p99_ms.end());
  auto over = std::count_if(sorted.begin(), sorted.end(), [&](double v) { return v > over_ms; });
  std::printf(
      "e2e p99 per %.2f s median %.2f ms, worst %.2f ms (from %.2f s); %lld of %zu windows over "
      "%.0f ms\n",
      t.window_s, sorted[sorted.size() / 2], *worst,
      t.window_s * static_cast<double>(worst - t.p99_ms.begin()), static_cast<long long>(over),
      sorted.size(), over_ms);
}

// ---- frames without a JSON tree: the server's frames have a fixed shape (Field: flat_json.h)

int64_t ToInt(std::string_view s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// ---- the WebSocket side of a device ----------------------------------------------------

std::string UpgradeRequest(const std::string& token, const std::string& since) {
  return "GET /api/v1/ws" + (since.empty() ? std::string() : "?since=" + since) +
         " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
}

struct Sock {
  int fd = -1;
  std::string in;
  std::string out;
  std::unique_ptr<ws::FrameReader> reader;
  SSL* ssl = nullptr;    // with --tls
  int user = 0;          // index into the plan's users
  int64_t next_seq = 1;  // the next seq this socket should see in its conversation
  // reconnect-storm
  bool upgraded = false;
  int64_t messages_seen = 0;
  int64_t t_upgraded = 0, t_done = 0;
  int connect_errno = 0;  // connect() failed at once
};

// Blocking connect + upgrade (TLS with --tls: client::UseTls).
int OpenWs(uint16_t port, const std::string& token, int source_index, std::string* leftover) {
  int fd = OpenConnection(port, source_index);
  if (fd < 0) return -1;
  try {
    ConnectionWrite(fd, UpgradeRequest(token, ""));
  } catch (const std::exception&) {
    CloseConnection(fd);
    return -1;
  }
  std::string buf;
  char tmp[4096];
  while (buf.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ConnectionRead(fd, tmp, sizeof(tmp), 10000);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
  }
  auto end = buf.find("\r\n\r\n");
  if (end == std::string::npos || buf.compare(0, 12, "HTTP/1.1 101") != 0) {
    CloseConnection(fd);
    return -1;
  }
  *leftover = buf.substr(end + 4);
  return fd;
}

// A socket of the traffic loops, after OpenWs: a TLS one is made non-blocking
// (plain ones use MSG_DONTWAIT).
void UseSocket(Sock& s) {
  s.ssl = TlsSessionOf(s.fd);
  if (s.ssl) ::fcntl(s.fd, F_SETFL, ::fcntl(s.fd, F_GETFL) | O_NONBLOCK);
}

// recv's conventions, through TLS when the socket has it.
ssize_t Receive(Sock& s, char* buf, size_t len) {
  if (!s.ssl) return ::recv(s.fd, buf, len, MSG_DONTWAIT);
  size_t got = 0;
  if (SSL_read_ex(s.ssl, buf, len, &got) == 1) return static_cast<ssize_t>(got);
  int e = SSL_get_error(s.ssl, 0);
  ERR_clear_error();
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    errno = EAGAIN;
    return -1;
  }
  return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -1;
}

void FlushOut(Sock& s) {
  while (!s.out.empty()) {
    ssize_t n;
    if (s.ssl) {
      size_t put = 0;
      n = SSL_write_ex(s.ssl, s.out.data(), s.out.size(), &put) == 1 ? static_cast<ssize_t>(put)
                                                                     : -1;
      if (n < 0) ERR_clear_error();  // retried later with the same bytes first
    } else {
      n = ::send(s.fd, s.out.data(), s.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    if (n <= 0) return;
    s.out.erase(0, static_cast<size_t>(n));
  }
}

// ---- users -------------------------------------------------------------------------------

// Signs up and logs in `n` users through the API (a running server), in parallel.
std::vector<Account> SignUpUsers(uint16_t port, int n, const std::string& prefix) {
  std::vector<Account> out(n);
  std::atomic<int> next{0};
  std::mutex mu;
  std::string error;
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i; (i = next++) < n;) {
        try {
          out[i] = Login(port, prefix + std::to_string(i), "bench-password");
        } catch (const std::exception& e) {
          std::lock_guard lock(mu);
          error = e.what();
          next = n;  // stop the others
        }
      }
    });
  for (auto& t : ts) t.join();
  if (!error.empty()) throw std::runtime_error("creating users: " + error);
  return out;
}

// The server under test: our own (seeded before it starts), the reference
// relay (--relay), or a running one.
struct Target {
  std::unique_ptr<TestServer> own;
  uint16_t port = 0;
  pid_t pid = 0;
  pid_t relay_pid = 0;    // the reference relay's or uWS's process
  const char* peer = "";  // which relay
  std::vector<Account> seeded;

  Target() = default;
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;
  ~Target() { StopRelay(); }

  // Forks the reference relay (tools/reference_relay.h) on a free port below
  // 32768, with `users` accounts (the relay has none: a token is a user id).
  void StartRelay(int users) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    std::mt19937 rng(static_cast<unsigned>(NowNs()) ^ static_cast<unsigned>(::getpid()));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int attempt = 0;; ++attempt) {
      port = static_cast<uint16_t>(20000 + rng() % 12000);
      a.sin_port = htons(port);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) break;
      if (attempt == 50) throw std::runtime_error("no free port for the relay");
    }
    if (::listen(fd, 4096) != 0) throw std::runtime_error("relay: listen failed");
    std::fflush(nullptr);
    relay_pid = ::fork();
    if (relay_pid < 0) throw std::runtime_error("relay: fork failed");
    if (relay_pid == 0) RunReferenceRelay(fd);
    ::close(fd);
    Started("reference relay", "reference relay (bare, non-durable, one thread)", users);
  }
  // Starts the budget's own peer, uWebSockets through its Node binding
  // (tools/uws_relay/relay.mjs, fetched by its install.mjs), on the ephemeral
  // port it reports on stdout; accounts as the reference relay's.
  void StartUws(int users) {
    const std::string script = std::string(PIGEON_SOURCE_DIR) + "/tools/uws_relay/relay.mjs";
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("uws: pipe failed");
    std::fflush(nullptr);
    relay_pid = ::fork();
    if (relay_pid < 0) throw std::runtime_error("uws: fork failed");
    if (relay_pid == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::execlp("node", "node", script.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    std::string line;
    pollfd p{out[0], POLLIN, 0};
    const int64_t deadline = NowNs() + 10'000'000'000;
    while (line.find('\n') == std::string::npos && NowNs() < deadline && ::poll(&p, 1, 100) >= 0) {
      char buf[64];
      if (!(p.revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = ::read(out[0], buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    ::close(out[0]);
    unsigned got = 0;
    if (std::sscanf(line.c_str(), "port %u", &got) != 1 || got == 0 || got > 65535) {
      StopRelay();
      throw std::runtime_error("uws: " + script +
                               " did not start (is uWS.js installed? node "
                               "tools/uws_relay/install.mjs)");
    }
    port = static_cast<uint16_t>(got);
    Started("uWebSockets (uWS.js via Node)", "uWebSockets (uWS.js via Node)", users);
  }
  // A relay (relay_pid) listens on `port`: it has `users` accounts, whose
  // tokens are their user ids.
  void Started(const char* name, const char* description, int users) {
    pid = relay_pid;
    peer = name;
    for (int i = 0; i < users; ++i) seeded.push_back({RelayUserId(i), RelayUserId(i), "relay"});
    std::fprintf(stderr, "%s on port %u, pid %d\n", description, port, static_cast<int>(relay_pid));
  }
  void StopRelay() {
    if (relay_pid <= 0) return;
    ::kill(relay_pid, SIGKILL);
    ::waitpid(relay_pid, nullptr, 0);
    relay_pid = 0;
  }

  // Our own server gets `users` seeded accounts (bench-0..) before it starts.
  void StartOwn(int users, const std::vector<std::string>& extra) {
    std::vector<std::string> args{"--log-level", "warn"};
    args.insert(args.end(), extra.begin(), extra.end());
    own = std::make_unique<TestServer>(args, /*network_threads=*/0);  // pigeond's default
    if (users > 0) {
      int64_t t0 = NowNs();
      seeded = SeedUsers(own->data_dir() + "/data", "bench-", users, "bench-password");
      std::fprintf(stderr, "seeded %d users in %.2f s (pigeond admin seed-users)\n", users,
                   static_cast<double>(NowNs() - t0) / 1e9);
    }
    own->Start();
    port = own->port();
    pid = own->pid();
  }
  std::vector<Account> Users(int n, const std::string& prefix) {
    if (own || relay_pid > 0) {
      if (static_cast<int>(seeded.size()) < n) throw std::logic_error("too few seeded users");
      return {seeded.begin(), seeded.begin() + n};
    }
    // A running server may hold an earlier run's users and conversations,
    // whose messages the audit would count as gaps: each run has its own.
    const std::string tagged = prefix + RunTag() + "-";
    std::fprintf(stderr, "signing up %d users (%s0...) through the API...\n", n, tagged.c_str());
    return SignUpUsers(port, n, tagged);
  }
  // This run's part of its user names: the start time and process id, base 36.
  static const std::string& RunTag() {
    static const std::string tag = [] {
      std::string t;
      for (auto v : {static_cast<uint64_t>(::time(nullptr)), static_cast<uint64_t>(::getpid())}) {
        std::string part;
        for (; v; v /= 36)
          part.insert(part.begin(), "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36]);
        t += part;
      }
      return t;
    }();
    return tag;
  }
};

// Pairs (0,1), (2,3)... share a 1:1 conversation; conv[i] is user i's.
std::vector<std::string> OpenPairs(uint16_t port, const std::vector<Account>& users) {
  std::vector<std::string> conv(users.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (size_t i; (i = 2 * next++) + 1 < users.size();)
        conv[i] = conv[i + 1] = OpenConversation(port, users[i], users[i + 1].user_id);
    });
  for (auto& t : ts) t.join();
  return conv;
}

// ---- worker processes -----------------------------------------------------------------------
//
// The parent sets everything up, then forks `procs` workers; worker w drives
// users [lo, hi) (whole pairs, so each conversation's audit is in one process)
// from source address 127.0.0.(2 + w). Each round: the parent writes 'g' to
// every worker, each runs the round and writes its results back; 'q' ends.

struct Plan {
  uint16_t port = 0;
  std::vector<Account> users;
  std::vector<std::string> conv;
  int body_bytes = 100;
  int procs = 1;
  // Each send at its due time, to the microsecond. Without it a load process
  // sends what is due whenever it wakes: on a frame from the server, or after
  // 1 ms. Then its sends bunch up right after each commit's acks arrive.
  bool pace = false;
  bool relay = false;  // the server is a relay (reference or uWS): no store to read
  const char* peer = "pigeond";
  // reconnect-storm --tls-resume: each device resumes the TLS session of its
  // connection before the storm (its ticket) instead of a full handshake.
  bool tls_resume = false;
};

struct Round {
  double rate = 0;      // messages/s in total (open loop), or
  uint64_t burst = 0;   // this many messages per user, all at once
  double duration = 0;  // seconds of sending (rate rounds)
};

struct RoundResult {
  uint64_t sent = 0, acked = 0, errors = 0, dup_or_reorder = 0, gaps = 0, lost = 0;
  std::map<std::string, uint64_t> error_codes;  // the error frames' codes, e.g. "unavailable"
  double send_secs = 0;  // first send to the last send or ack, whichever is later
  std::vector<int64_t> ack, e2e;
  std::vector<int64_t> e2e_sent;  // each e2e sample's send time (CLOCK_MONOTONIC ns)
};

bool WriteAll(int fd, const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}
bool ReadAll(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::read(fd, c, n);
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void WriteResult(int fd, const RoundResult& r) {
  uint64_t h[9] = {r.sent, r.acked,      r.errors,     r.dup_or_reorder, r.gaps,
                   r.lost, r.ack.size(), r.e2e.size(), r.e2e_sent.size()};
  WriteAll(fd, h, sizeof(h));
  WriteAll(fd, &r.send_secs, sizeof(r.send_secs));
  WriteAll(fd, r.ack.data(), r.ack.size() * sizeof(int64_t));
  WriteAll(fd, r.e2e.data(), r.e2e.size() * sizeof(int64_t));
  WriteAll(fd, r.e2e_sent.data(), r.e2e_sent.size() * sizeof(int64_t));  // empty for the storm
  uint64_t codes = r.error_codes.size();
  WriteAll(fd, &codes, sizeof codes);
  for (auto& [code, n] : r.error_codes) {
    uint64_t len = code.size();
    WriteAll(fd, &len, sizeof len);
    WriteAll(fd, code.data(), code.size());
    WriteAll(fd, &n, sizeof n);
  }
}
bool ReadResult(int fd, RoundResult& r) {
  uint64_t h[9];
  if (!ReadAll(fd, h, sizeof(h)) || !ReadAll(fd, &r.send_secs, sizeof(r.send_secs))) return false;
  r.sent = h[0], r.acked = h[1], r.errors = h[2], r.dup_or_reorder = h[3], r.gaps = h[4],
  r.lost = h[5];
  r.ack.resize(h[6]);
  r.e2e.resize(h[7]);
  r.e2e_sent.resize(h[8]);
  uint64_t codes = 0;
  if (!ReadAll(fd, r.ack.data(), h[6] * sizeof(int64_t)) ||
      !ReadAll(fd, r.e2e.data(), h[7] * sizeof(int64_t)) ||
      !ReadAll(fd, r.e2e_sent.data(), h[8] * sizeof(int64_t)) || !ReadAll(fd, &codes, sizeof codes))
    return false;
  for (uint64_t i = 0; i < codes; ++i) {
    uint64_t len = 0, n = 0;
    std::string code;
    if (!ReadAll(fd, &len, sizeof len) || len > 256) return false;
    code.resize(len);
    if (!ReadAll(fd, code.data(), len) || !ReadAll(fd, &n, sizeof n)) return false;
    r.error_codes[code] += n;
  }
  return true;
}

// One worker's devices and its traffic rounds.
class Worker {
 public:
  Worker(const Plan& plan, int index, int lo, int hi)
      : plan_(plan), index_(index), lo_(lo), hi_(hi), rng_(42 + index) {}

  // Connects every device of this worker (blocking upgrades).
  bool Connect() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    socks_.resize(static_cast<size_t>(hi_ - lo_));
    for (int i = lo_; i < hi_; ++i) {
      auto& s = socks_[i - lo_];
      s.user = i;
      s.fd = OpenWs(plan_.port, plan_.users[i].token, SourceIndex(), &s.in);
      if (s.fd < 0) return false;
      UseSocket(s);
      s.reader = std::make_unique<ws::FrameReader>(1 << 24, false);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u32 = static_cast<uint32_t>(i - lo_);
      epoll_ctl(ep_, EPOLL_CTL_ADD, s.fd, &ev);
    }
    return true;
  }
  int SourceIndex() const { return plan_.procs > 1 || index_ > 0 ? 1 + index_ : 0; }

  RoundResult Run(const Round& round) {
    RoundResult r;
    const int n = hi_ - lo_;
    const double rate = round.rate / plan_.procs;
    const uint64_t total = round.burst ? round.burst * static_cast<uint64_t>(n)
                                       : static_cast<uint64_t>(rate * round.duration);
    std::vector<int64_t> sent_at(total, 0);
    // Paced sleeps end within a microsecond of the due time, not 50 µs after.
    if (plan_.pace) prctl(PR_SET_TIMERSLACK, 1000UL);
    r.ack.reserve(total);
    r.e2e.reserve(total);
    r.e2e_sent.reserve(total);
    const std::string pad(static_cast<size_t>(std::max(0, plan_.body_bytes - 22)), 'x');
    const int64_t t0 = NowNs();
    const int64_t send_end = round.burst ? t0 : t0 + static_cast<int64_t>(round.duration * 1e9);
    const int64_t hard_end = send_end + 30'000'000'000LL;  // drain time
    std::vector<int> dirty;
    std::vector<epoll_event> events(1024);
    std::string frame, payload;
    int64_t t_last_send = t0, t_last_ack = t0;
    uint64_t sent = 0;
    for (;;) {
      int64_t now = NowNs();
      // Open loop: as many sends as the schedule says are due by now.
      uint64_t due =
          round.burst ? total
          : now >= send_end
              ? total
              : std::min<uint64_t>(
                    total, static_cast<uint64_t>(static_cast<double>(now - t0) * rate / 1e9));
      for (; sent < due; ++sent) {
        int u = round.burst ? static_cast<int>(sent % static_cast<uint64_t>(n))
                            : static_cast<int>(rng_() % static_cast<unsigned>(n));
        auto& s = socks_[u];
        payload.clear();
        // A client_msg_id as devices make them: random (a UUID's 122 bits
        // in most apps; 64 here), so each one lands at a random place among
        // its sender's earlier ones in the store's dedup index. The rest
        // keeps it unique across workers and runs, and its last number
        // matches the ack to the send.
        char rand_hex[17];
        std::snprintf(rand_hex, sizeof rand_hex, "%016llx",
                      static_cast<unsigned long long>(id_rng_()));
        payload.append(R"({"type":"send","conversation_id":")")
            .append(plan_.conv[s.user])
            .append(R"(","client_msg_id":")")
            .append(rand_hex, 16)
            .append("w")
            .append(std::to_string(index_))
            .append(nonce_)
            .append("r")
            .append(std::to_string(round_))
            .append("-")
            .append(std::to_string(sent))
            .append(R"(","body":"t=)")
            .append(std::to_string(now))
            .append(";")
            .append(pad)
            .append("\"}");
        mask_seed_ = mask_seed_ * 1664525u + 1013904223u;
        uint8_t mask[4];
        std::memcpy(mask, &mask_seed_, 4);
        if (s.out.empty()) dirty.push_back(u);
        ws::AppendFrame(s.out, ws::kText, payload, mask);
        sent_at[sent] = now;
        t_last_send = now;
      }
      for (int u : dirty) FlushOut(socks_[u]);
      dirty.erase(
          std::remove_if(dirty.begin(), dirty.end(), [&](int u) { return socks_[u].out.empty(); }),
          dirty.end());
      bool done = sent >= total && r.acked + r.errors >= sent && r.e2e.size() >= r.acked;
      if (done || now > hard_end) break;
      // Wake for frames, or after 1 ms; paced, also when the next send is due.
      int64_t wait_ns = 1'000'000;
      if (plan_.pace && !round.burst && sent < total) {
        auto next_due = t0 + static_cast<int64_t>(static_cast<double>(sent + 1) * 1e9 / rate);
        wait_ns = std::clamp<int64_t>(next_due - NowNs(), 0, wait_ns);
      }
      timespec wait{0, static_cast<long>(wait_ns)};
      int k = epoll_pwait2(ep_, events.data(), static_cast<int>(events.size()), &wait, nullptr);
      for (int e = 0; e < k; ++e) {
        auto& s = socks_[events[e].data.u32];
        char buf[65536];
        // Level-triggered: a short read drained the socket, and anything left
        // is reported again; no read just to see EAGAIN.
        for (;;) {
          ssize_t got = Receive(s, buf, sizeof(buf));
          if (got <= 0) break;
          s.in.append(buf, static_cast<size_t>(got));
          if (static_cast<size_t>(got) < sizeof(buf)) break;  // TLS: one record, none buffered
        }
        int64_t rnow = NowNs();
        size_t used = s.reader->Consume(s.in.data(), s.in.size(), [&](const ws::Event& ev) {
          if (ev.kind != ws::Event::Kind::kText) return;
          std::string_view f = ev.payload;
          auto type = Field(f, "type");
          if (type == "ack") {
            auto id = Field(f, "client_msg_id");
            auto dash = id.rfind('-');
            uint64_t i = static_cast<uint64_t>(ToInt(id.substr(dash + 1)));
            if (i < total && sent_at[i] != 0) r.ack.push_back(rnow - sent_at[i]);
            ++r.acked;
            auto& m = max_acked_seq_[std::string(Field(f, "conversation_id"))];
            m = std::max<int64_t>(m, ToInt(Field(f, "seq")));
            t_last_ack = rnow;
          } else if (type == "message") {
            int64_t seq = ToInt(Field(f, "seq"));
            if (seq < s.next_seq) {
              ++r.dup_or_reorder;
            } else {
              if (seq > s.next_seq) ++r.gaps;
              s.next_seq = seq + 1;
            }
            if (Field(f, "sender") != plan_.users[s.user].user_id) {
              int64_t at = ToInt(Field(f, "body").substr(2));
              r.e2e.push_back(rnow - at);
              r.e2e_sent.push_back(at);
            }
          } else if (type == "error") {
            ++r.errors;
            ++r.error_codes[std::string(Field(f, "code"))];
          }
        });
        s.in.erase(0, used);
      }
    }
    r.sent = sent;
    r.send_secs = static_cast<double>(std::max(t_last_send, t_last_ack) - t0) / 1e9;
    // Audit: every socket saw its conversation up to the last acked seq.
    for (auto& s : socks_) {
      auto it = max_acked_seq_.find(plan_.conv[s.user]);
      int64_t want = it == max_acked_seq_.end() ? 0 : it->second;
      if (s.next_seq - 1 < want) r.lost += static_cast<uint64_t>(want - (s.next_seq - 1));
    }
    ++round_;
    return r;
  }

  void CloseAll() {
    for (auto& s : socks_) CloseConnection(s.fd);
    socks_.clear();
  }
  // Each device's TLS session (its ticket: the client has read it with the
  // traffic), for a later connection to resume; null where there is none.
  std::vector<SSL_SESSION*> TakeTlsSessions() {
    std::vector<SSL_SESSION*> out;
    for (auto& s : socks_) out.push_back(s.ssl ? SSL_get1_session(s.ssl) : nullptr);
    return out;
  }

 private:
  const Plan& plan_;
  int index_, lo_, hi_;
  std::mt19937 rng_;  // who sends: the same sequence in every run
  std::mt19937_64 id_rng_{static_cast<uint64_t>(NowNs()) ^ static_cast<uint64_t>(index_)};
  int ep_ = -1;
  int round_ = 0;
  // Client message ids are unique across workers, rounds and runs.
  std::string nonce_ = "n" + std::to_string(NowNs());
  uint32_t mask_seed_ = 0x12345678;
  std::vector<Sock> socks_;
  std::unordered_map<std::string, int64_t> max_acked_seq_;  // conversation -> highest acked
};

// The parent's handle on its workers.
class Fleet {
 public:
  // Forks the workers; `body` runs in each child with (worker, read fd, write
  // fd) after the child's share of users is known.
  using Body = std::function<int(int index, int lo, int hi, int in, int out)>;
  Fleet(int procs, int users, const Body& body) {
    int per = ((users / procs) + 1) & ~1;  // whole pairs
    for (int w = 0; w < procs; ++w) {
      int lo = std::min(users, w * per), hi = std::min(users, lo + per);
      if (w == procs - 1) hi = users;
      int to_child[2], to_parent[2];
      if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(to_parent, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe failed");
      std::fflush(nullptr);
      pid_t pid = ::fork();
      if (pid == 0) {
        ::close(to_child[1]);
        ::close(to_parent[0]);
        int rc = 1;
        try {
          rc = body(w, lo, hi, to_child[0], to_parent[1]);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "worker %d: %s\n", w, e.what());
        }
        std::fflush(nullptr);
        _exit(rc);
      }
      ::close(to_child[0]);
      ::close(to_parent[1]);
      kids_.push_back({pid, to_child[1], to_parent[0]});
    }
  }
  ~Fleet() {
    for (auto& k : kids_) {
      char q = 'q';
      (void)WriteAll(k.to, &q, 1);
      ::close(k.to);
      ::close(k.from);
      int st;
      ::waitpid(k.pid, &st, 0);
    }
  }
  // Waits for one byte from every worker ('r': ready); false if one failed.
  bool AllReady() {
    for (auto& k : kids_) {
      char c = 0;
      if (!ReadAll(k.from, &c, 1) || c != 'r') return false;
    }
    return true;
  }
  void Go() {
    for (auto& k : kids_) {
      char g = 'g';
      WriteAll(k.to, &g, 1);
    }
  }
  bool Collect(RoundResult& total) {
    for (auto& k : kids_) {
      RoundResult r;
      if (!ReadResult(k.from, r)) return false;
      total.sent += r.sent, total.acked += r.acked, total.errors += r.errors;
      for (auto& [code, n] : r.error_codes) total.error_codes[code] += n;
      total.dup_or_reorder += r.dup_or_reorder, total.gaps += r.gaps, total.lost += r.lost;
      total.send_secs = std::max(total.send_secs, r.send_secs);
      total.ack.insert(total.ack.end(), r.ack.begin(), r.ack.end());
      total.e2e.insert(total.e2e.end(), r.e2e.begin(), r.e2e.end());
      total.e2e_sent.insert(total.e2e_sent.end(), r.e2e_sent.begin(), r.e2e_sent.end());
    }
    return true;
  }
  size_t size() const { return kids_.size(); }
  // CPU seconds used so far by the worker processes (the load generator).
  double WorkerCpuSeconds() const {
    double sum = 0;
    for (auto& k : kids_) sum += bench::CpuSeconds(k.pid);
    return sum;
  }

 private:
  struct Kid {
    pid_t pid;
    int to, from;
  };
  std::vector<Kid> kids_;
};

// A worker's side of the rounds protocol.
int TrafficWorker(const Plan& plan, const std::vector<Round>& rounds, int w, int lo, int hi, int in,
                  int out) {
  Worker worker(plan, w, lo, hi);
  char r = worker.Connect() ? 'r' : 'x';
  WriteAll(out, &r, 1);
  if (r != 'r') return 1;
  for (const auto& round : rounds) {
    char c;
    if (!ReadAll(in, &c, 1) || c != 'g') return 0;
    WriteResult(out, worker.Run(round));
  }
  char c;
  (void)ReadAll(in, &c, 1);
  worker.CloseAll();
  return 0;
}

// What pigeond's /metrics say of its store (zeros from a server without those
// series): compaction debt now, and counters whose difference over a round
// says how it committed.
struct StoreState {
  double level0_files = 0, pending_compaction_bytes = 0, write_stall_s = 0;
  double commits = 0, commit_seconds = 0, commit_ops = 0;  // counters: since the start
  static StoreState Read(uint16_t port) {
    StoreState d;
    auto r = Http(port, "GET", "/metrics");
    if (r.status != 200) return d;
    auto value = [&](std::string_view name) { return MetricIn(r.body, name).value_or(0.0); };
    d.level0_files = value("pigeon_store_level0_files");
    d.pending_compaction_bytes = value("pigeon_store_pending_compaction_bytes");
    d.write_stall_s = value("pigeon_store_write_stall_seconds_total");
    d.commits = value("pigeon_commit_seconds_count");
    d.commit_seconds = value("pigeon_commit_seconds_sum");
    d.commit_ops = value("pigeon_commit_batch_ops_sum");
    return d;
  }
};

// The group commits of one round, from two StoreStates.
struct CommitsInRound {
  double count = 0, ops_each = 0, ms_each = 0;
  CommitsInRound() = default;
  CommitsInRound(const StoreState& before, const StoreState& after)
      : count(after.commits - before.commits) {
    if (count <= 0) return;
    ops_each = (after.commit_ops - before.commit_ops) / count;
    ms_each = (after.commit_seconds - before.commit_seconds) / count * 1e3;
  }
};

struct RoundReport {
  Round round;
  StoreState store;          // at the round's end
  double store_stall_s = 0;  // commits slowed or stopped by the store during the round
  CommitsInRound commits;    // pigeond's group commits during the round
  RoundResult result;
  double cpu_us_per_msg = 0;
  double loadgen_us_per_msg = 0;                       // the load generator's own CPU
  std::map<std::string, double> cpu_by_thread;         // µs per message
  std::map<std::string, Switches> switches_by_thread;  // per message
  Switches switches;                                   // all threads, per message
  double achieved = 0;
  Summary ack, e2e;
  Timeline e2e_windows;
  bool ok = false;
};

// CPU seconds used so far: the server, each group of its threads, and the
// load generator's worker processes.
struct CpuSnapshot {
  double server = 0, load_generator = 0;
  std::map<std::string, ThreadUse> threads;
  static CpuSnapshot Take(pid_t pid, const Fleet& fleet) {
    return {CpuSeconds(pid), fleet.WorkerCpuSeconds(), ThreadUsage(pid)};
  }
};

// Runs the rounds over `procs` workers against `target`, printing each.
std::vector<RoundReport> RunTraffic(const Plan& plan, pid_t pid, const std::vector<Round>& rounds) {
  const int nusers = static_cast<int>(plan.users.size());
  Fleet fleet(plan.procs, nusers, [&](int w, int lo, int hi, int in, int out) {
    return TrafficWorker(plan, rounds, w, lo, hi, in, out);
  });
  if (!fleet.AllReady()) throw std::runtime_error("a worker could not connect its devices");
  std::vector<RoundReport> reports;
  for (const auto& round : rounds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let the last round settle
    const auto cpu0 = CpuSnapshot::Take(pid, fleet);
    const StoreState store0 = plan.relay ? StoreState{} : StoreState::Read(plan.port);
    int64_t t0 = NowNs();
    fleet.Go();
    std::optional<CpuSnapshot> cpu1;
    if (!round.burst) {
      // Server CPU over the sending window.
      std::this_thread::sleep_until(std::chrono::steady_clock::time_point(
          std::chrono::nanoseconds(t0 + static_cast<int64_t>(round.duration * 1e9))));
      cpu1 = CpuSnapshot::Take(pid, fleet);
    }
    RoundReport rep;
    rep.round = round;
    if (!fleet.Collect(rep.result)) throw std::runtime_error("a worker failed");
    if (!cpu1) cpu1 = CpuSnapshot::Take(pid, fleet);
    rep.store = plan.relay ? StoreState{} : StoreState::Read(plan.port);
    rep.store_stall_s = rep.store.write_stall_s - store0.write_stall_s;
    rep.commits = CommitsInRound(store0, rep.store);
    auto& r = rep.result;
    const double msgs = static_cast<double>(std::max<uint64_t>(1, r.acked));
    rep.cpu_us_per_msg = (cpu1->server - cpu0.server) * 1e6 / msgs;
    rep.loadgen_us_per_msg = (cpu1->load_generator - cpu0.load_generator) * 1e6 / msgs;
    for (auto& [name, use] : cpu1->threads) {
      auto it = cpu0.threads.find(name);
      const ThreadUse before = it == cpu0.threads.end() ? ThreadUse{} : it->second;
      double d = (use.cpu_s - before.cpu_s) * 1e6 / msgs;
      if (d > 0) rep.cpu_by_thread[name] = d;
      Switches sw{(use.switches.voluntary - before.switches.voluntary) / msgs,
                  (use.switches.involuntary - before.switches.involuntary) / msgs};
      rep.switches.voluntary += sw.voluntary;
      rep.switches.involuntary += sw.involuntary;
      if (sw.voluntary + sw.involuntary >= 0.005) rep.switches_by_thread[name] = sw;
    }
    rep.achieved = static_cast<double>(r.acked) / std::max(1e-9, r.send_secs);
    rep.ack = Summarize(r.ack);
    if (!round.burst) rep.e2e_windows = WindowP99(r.e2e, r.e2e_sent, 0.25);
    rep.e2e = Summarize(r.e2e);  // sorts: after the windows
    rep.ok =
        r.lost == 0 && r.dup_or_reorder == 0 && r.gaps == 0 && r.errors == 0 && r.acked == r.sent;
    if (round.burst)
      std::printf("burst             %llu messages per user, %d users, %d-byte bodies, %d procs\n",
                  (unsigned long long)round.burst, nusers, plan.body_bytes, plan.procs);
    else
      std::printf(
          "offered rate      %.0f msg/s over %.1f s, %d users, %d-byte bodies, %d procs%s\n",
          round.rate, round.duration, nusers, plan.body_bytes, plan.procs,
          plan.pace ? ", paced" : "");
    std::printf("sent / acked      %llu / %llu   (achieved %.0f acks/s over %.2f s)\n",
                (unsigned long long)r.sent, (unsigned long long)r.acked, rep.achieved, r.send_secs);
    PrintLatencyHeader();
    PrintLatency("ack latency", rep.ack);
    PrintLatency("end-to-end", rep.e2e);
    PrintTimeline(rep.e2e_windows, 5);
    std::printf("server CPU        %.1f us per message (user+system)", rep.cpu_us_per_msg);
    for (auto& [name, us] : rep.cpu_by_thread) std::printf("; %s %.1f", name.c_str(), us);
    std::printf(
        "\nserver switches   %.2f context switches per message (slept %.2f, preempted %.2f)",
        rep.switches.voluntary + rep.switches.involuntary, rep.switches.voluntary,
        rep.switches.involuntary);
    for (auto& [name, sw] : rep.switches_by_thread)
      std::printf("; %s %.2f+%.2f", name.c_str(), sw.voluntary, sw.involuntary);
    std::printf("\nload generator    %.1f us of CPU per message (its %d processes)\n",
                rep.loadgen_us_per_msg, plan.procs);
    if (!plan.relay)
      std::printf(
          "store             %.0f level-0 tables, %.2f GB of pending compaction; commits stalled "
          "%.2f s\n",
          rep.store.level0_files, rep.store.pending_compaction_bytes / 1e9, rep.store_stall_s);
    if (!plan.relay)
      std::printf(
          "commits           %.0f (%.0f/s), %.1f operations and %.3f ms each (write + sync)\n",
          rep.commits.count, rep.commits.count / r.send_secs, rep.commits.ops_each,
          rep.commits.ms_each);
    std::printf("audit             %s: lost %llu, duplicate/reordered %llu, gaps %llu, errors %llu",
                rep.ok ? "PASS" : "FAIL", (unsigned long long)r.lost,
                (unsigned long long)r.dup_or_reorder, (unsigned long long)r.gaps,
                (unsigned long long)r.errors);
    const char* sep = " (";
    for (auto& [code, n] : r.error_codes) {
      std::printf("%s%s %llu", sep, code.c_str(), (unsigned long long)n);
      sep = ", ";
    }
    std::printf("%s\n\n", r.error_codes.empty() ? "" : ")");
    std::fflush(stdout);
    reports.push_back(std::move(rep));
  }
  return reports;
}

// A JSON object of `m`'s numbers: figures by thread, error frames by code.
template <class Number>
json::object ObjectOf(const std::map<std::string, Number>& m) {
  json::object o;
  for (auto& [name, n] : m) o[name] = n;
  return o;
}

json::object SwitchesJson(const Switches& sw) {
  return {{"voluntary", sw.voluntary}, {"involuntary", sw.involuntary}};
}

json::object SwitchesByThread(const std::map<std::string, Switches>& m) {
  json::object o;
  for (auto& [name, sw] : m) o[name] = SwitchesJson(sw);
  return o;
}

json::object ToJson(const RoundReport& rep) {
  auto& r = rep.result;
  json::object o{
      {"offered_rate", rep.round.rate},
      {"burst_per_user", rep.round.burst},
      {"duration_s", rep.round.duration},
      {"sent", r.sent},
      {"acked", r.acked},
      {"achieved_rate", rep.achieved},
      {"ack_latency", ToJson(rep.ack)},
      {"e2e_latency", ToJson(rep.e2e)},
      {"e2e_histogram", Histogram(r.e2e)},
      {"e2e_p99_window_s", rep.e2e_windows.window_s},
      {"e2e_p99_by_window_ms", json::value_from(rep.e2e_windows.p99_ms)},
      {"server_cpu_us_per_msg", rep.cpu_us_per_msg},
      {"server_cpu_us_per_msg_by_thread", ObjectOf(rep.cpu_by_thread)},
      {"server_context_switches_per_msg", SwitchesJson(rep.switches)},
      {"server_context_switches_per_msg_by_thread", SwitchesByThread(rep.switches_by_thread)},
      {"load_generator_cpu_us_per_msg", rep.loadgen_us_per_msg},
      {"store_level0_files", rep.store.level0_files},
      {"store_pending_compaction_bytes", rep.store.pending_compaction_bytes},
      {"store_write_stall_s", rep.store_stall_s},
      {"commits", rep.commits.count},
      {"commit_ops_each", rep.commits.ops_each},
      {"commit_ms_each", rep.commits.ms_each},
      {"lost", r.lost},
      {"duplicate_or_reordered", r.dup_or_reorder},
      {"gaps", r.gaps},
      {"errors", r.errors},
      {"error_codes", ObjectOf(r.error_codes)},
      {"audit_pass", rep.ok}};
  return o;
}

// ---- scenarios ----------------------------------------------------------------------

int Idle(Target& t, int sockets, int procs, json::object& report) {
  auto users = t.Users(sockets, "idle-");
  // Every token is looked up once before the baseline, as a sign-up and login
  // through the API would have done: the store's cache then holds the session
  // records, and what grows afterwards is the sockets' own state.
  {
    std::atomic<int> next{0};
    std::vector<std::thread> ts;
    for (int k = 0; k < 4; ++k)
      ts.emplace_back([&] {
        for (int i; (i = next++) < sockets;)
          (void)Http(t.port, "GET", "/api/v1/conversations", "", users[i].token);
      });
    for (auto& th : ts) th.join();
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  int64_t rss0 = StatusKb(t.pid, "VmRSS"), slab0 = MeminfoKb("Slab"), tcp0 = SockstatTcpMemPages();
  Plan plan;
  plan.port = t.port;
  plan.users = users;
  plan.procs = procs;
  {
    // Each worker opens half its sockets, waits for the parent to measure,
    // then opens the rest: the second half's growth is the marginal cost,
    // free of whatever the first sockets' growth absorbed.
    Fleet fleet(procs, sockets, [&](int w, int lo, int hi, int in, int out) {
      std::vector<int> fds;
      char r = 'r';
      int mid = lo + (hi - lo) / 2;
      auto open = [&](int from, int to) {
        for (int i = from; i < to && r == 'r'; ++i) {
          std::string leftover;
          int fd = OpenWs(plan.port, users[i].token, 1 + w, &leftover);
          if (fd < 0) r = 'x';
          fds.push_back(fd);
        }
        WriteAll(out, &r, 1);
      };
      char c;
      open(lo, mid);
      if (!ReadAll(in, &c, 1) || r != 'r') return 1;
      open(mid, hi);
      (void)ReadAll(in, &c, 1);  // held open until the parent has measured
      return r == 'r' ? 0 : 1;
    });
    if (!fleet.AllReady()) throw std::runtime_error("a worker could not open its sockets");
    std::this_thread::sleep_for(std::chrono::seconds(2));
    int64_t rss_half = StatusKb(t.pid, "VmRSS");
    fleet.Go();
    if (!fleet.AllReady()) throw std::runtime_error("a worker could not open its sockets");
    int first_half = 0;  // as Fleet deals users: whole pairs per worker
    for (int w = 0, per = ((sockets / procs) + 1) & ~1; w < procs; ++w) {
      int lo = std::min(sockets, w * per), hi = std::min(sockets, lo + per);
      first_half += (hi - lo) / 2;
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
    int64_t rss1 = StatusKb(t.pid, "VmRSS"), slab1 = MeminfoKb("Slab"),
            tcp1 = SockstatTcpMemPages();
    double user_b = static_cast<double>(rss1 - rss0) * 1024.0 / sockets;
    double marginal_b =
        static_cast<double>(rss1 - rss_half) * 1024.0 / std::max(1, sockets - first_half);
    // Both ends of each connection are on this machine: kernel figures cover a pair.
    double slab_b = static_cast<double>(slab1 - slab0) * 1024.0 / sockets;
    double tcp_b = static_cast<double>(tcp1 - tcp0) * 4096.0 / sockets;
    std::printf("idle sockets            %d (from %d processes)\n", sockets, procs);
    std::printf("pigeond RSS             %lld KiB -> %lld KiB\n", (long long)rss0, (long long)rss1);
    std::printf("user space per socket   %.0f bytes (marginal, the second half: %.0f bytes)\n",
                user_b, marginal_b);
    std::printf("kernel slab per pair    %.0f bytes (client + server socket)\n", slab_b);
    std::printf("kernel TCP buffers/pair %.0f bytes\n", tcp_b);
    std::printf("projected, 1M sockets   %.2f GB user space + %.2f GB kernel (half of each pair)\n",
                user_b * 1e6 / 1e9, slab_b / 2 * 1e6 / 1e9);
    report = {{"scenario", "idle"},
              {"sockets", sockets},
              {"procs", procs},
              {"rss_before_kib", rss0},
              {"rss_after_kib", rss1},
              {"user_bytes_per_socket", user_b},
              {"user_bytes_per_socket_marginal", marginal_b},
              {"kernel_slab_bytes_per_pair", slab_b},
              {"kernel_tcp_buffer_bytes_per_pair", tcp_b}};
  }
  return 0;
}

Plan MakePlan(Target& t, int nusers, int body, int procs, bool pace = false) {
  if (nusers % 2) ++nusers;
  Plan plan;
  plan.port = t.port;
  plan.users = t.Users(nusers, "steady-");
  std::fprintf(stderr, "opening %d conversations...\n", nusers / 2);
  plan.conv = OpenPairs(t.port, plan.users);
  plan.body_bytes = body;
  plan.procs = procs;
  plan.pace = pace;
  plan.relay = t.relay_pid > 0;
  plan.peer = plan.relay ? t.peer : "pigeond";
  return plan;
}

int Traffic(Target& t, const Plan& plan, const std::vector<Round>& rounds, const char* scenario,
            json::object& report) {
  auto reps = RunTraffic(plan, t.pid, rounds);
  json::array arr;
  bool all_ok = true;
  double best = 0;
  for (auto& r : reps) {
    arr.push_back(ToJson(r));
    all_ok = all_ok && r.ok;
    if (r.ok && !r.round.burst && r.e2e.p99 < 50 && r.achieved >= 0.95 * r.round.rate)
      best = std::max(best, r.round.rate);
  }
  if (!rounds.empty() && !rounds[0].burst && rounds.size() > 1)
    std::printf("highest offered rate with e2e p99 < 50 ms (audited): %.0f msg/s\n", best);
  report = {{"scenario", scenario},
            {"server", plan.peer},
            {"users", plan.users.size()},
            {"procs", plan.procs},
            {"body_bytes", plan.body_bytes},
            {"paced", plan.pace},
            {"rounds", arr},
            {"highest_rate_p99_under_50ms", best}};
  return all_ok ? 0 : 3;
}

// A device offline while `k` messages arrive, then pulling them all with the
// feed API (pages of 1,000): the time to catch up, and an audit of the pull.
int Catchup(Target& t, int k, json::object& report) {
  auto users = t.Users(2, "catchup-");
  auto conv = OpenConversation(t.port, users[0], users[1].user_id);
  auto ws = WsClient::Connect(t.port, users[0].token);
  if (!ws) throw std::runtime_error("connect failed");
  std::cerr << "sending " << k << " messages to an offline device...\n";
  const std::string body(100, 'x');
  for (int sent = 0; sent < k;) {
    int n = std::min(1000, k - sent);
    for (int i = 0; i < n; ++i)
      ws->SendJson(json::object{{"type", "send"},
                                {"conversation_id", conv},
                                {"client_msg_id", std::to_string(sent + i)},
                                {"body", body}});
    for (int i = 0; i < n; ++i)
      if (!ws->NextOfType("ack", 30000)) throw std::runtime_error("ack missing");
    sent += n;
  }
  const int64_t t0 = NowNs();
  std::string since;
  int pulled = 0, pages = 0;
  int64_t expect = 1;
  bool in_order = true;
  for (;;) {
    auto r = Http(t.port, "GET",
                  "/api/v1/messages?limit=1000" + (since.empty() ? "" : "&since=" + since), "",
                  users[1].token);
    if (r.status != 200) throw std::runtime_error("feed read failed: " + r.body);
    ++pages;
    for (auto& m : r.json.at("messages").as_array()) {
      if (m.at("seq").to_number<int64_t>() != expect++) in_order = false;
      ++pulled;
    }
    since = std::string(r.json.at("next_cursor").as_string());
    if (!r.json.at("has_more").as_bool()) break;
  }
  const double secs = static_cast<double>(NowNs() - t0) / 1e9;
  const bool ok = pulled == k && in_order;
  std::printf("pending messages  %d\n", k);
  std::printf("pulled            %d in %d pages, %.3f s (%.0f messages/s)\n", pulled, pages, secs,
              pulled / secs);
  std::printf("audit             %s\n", ok ? "PASS: all, in seq order" : "FAIL");
  report = {{"scenario", "catchup"}, {"pending", k},    {"pulled", pulled},
            {"pages", pages},        {"seconds", secs}, {"audit_pass", ok}};
  return ok ? 0 : 3;
}

// Every device of `plan` reconnects at once with since = the start of its feed
// (non-blocking connects, all in flight together) and replays its feed: the
// time for all of them to be upgraded and to hold every message.
int StormWorker(const Plan& plan, int msgs, int w, int lo, int hi, int in, int out) {
  // Fill: every user sends `msgs` messages to its peer, then everyone disconnects.
  std::vector<SSL_SESSION*> resume;  // --tls-resume: by device, from lo
  {
    Worker filler(plan, w, lo, hi);
    if (!filler.Connect()) return 1;
    auto r = filler.Run(Round{.burst = static_cast<uint64_t>(msgs)});
    if (plan.tls_resume) resume = filler.TakeTlsSessions();
    filler.CloseAll();
    if (r.acked != r.sent || r.lost || r.errors) return 1;
  }
  char c = 'r';
  WriteAll(out, &c, 1);
  if (!ReadAll(in, &c, 1) || c != 'g') return 0;
  const int64_t want = 2 * static_cast<int64_t>(msgs);  // both members' messages
  const int64_t t0 = NowNs();
  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Sock> socks(static_cast<size_t>(hi - lo));
  const std::string start_cursor = "f0000000000000000";
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(plan.port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = lo; i < hi; ++i) {
    auto& s = socks[i - lo];
    s.user = i;
    s.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    // Other source addresses than the fill's (whose closed sockets sit in
    // TIME_WAIT), and the port picked at connect(): a bind() that must pick a
    // port itself searches the whole range and made the storm the bench's own.
    sockaddr_in src{};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000000 + 20 + static_cast<uint32_t>(w));
    int one = 1;
    setsockopt(s.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    ::bind(s.fd, reinterpret_cast<sockaddr*>(&src), sizeof(src));
    setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::connect(s.fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0 &&
        errno != EINPROGRESS) {
      s.connect_errno = errno;
    }
    s.out = UpgradeRequest(plan.users[i].token, start_cursor);
    s.ssl = NewTlsSession(s.fd);  // --tls: the handshake first
    if (s.ssl && static_cast<size_t>(i - lo) < resume.size() && resume[i - lo]) {
      SSL_set_session(s.ssl, resume[i - lo]);
      SSL_SESSION_free(resume[i - lo]);
      resume[i - lo] = nullptr;
    }
    s.reader = std::make_unique<ws::FrameReader>(1 << 24, false);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.u32 = static_cast<uint32_t>(i - lo);
    epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev);
  }
  size_t done = 0, failed = 0;
  std::vector<epoll_event> events(1024);
  const int64_t hard_end = t0 + 30'000'000'000LL;
  uint64_t reorder = 0;
  auto close_sock = [](Sock& s) {
    SSL_free(s.ssl);
    s.ssl = nullptr;
    ::close(s.fd);
    s.fd = -1;
  };
  auto watch = [&](uint32_t index, uint32_t what) {
    epoll_event ev{};
    ev.events = what;
    ev.data.u32 = index;
    epoll_ctl(ep, EPOLL_CTL_MOD, socks[index].fd, &ev);
  };
  while (done + failed < socks.size() && NowNs() < hard_end) {
    int k = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 100);
    for (int e = 0; e < k; ++e) {
      auto& s = socks[events[e].data.u32];
      if (s.t_done || s.fd < 0) continue;
      if ((events[e].events & (EPOLLERR | EPOLLHUP)) && !s.upgraded) {
        int err = s.connect_errno;
        socklen_t len = sizeof err;
        if (!err) getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (!failed)
          std::fprintf(stderr, "storm: connect failed (%s)\n", std::strerror(err ? err : EPIPE));
        ++failed, close_sock(s);
        continue;
      }
      if (s.ssl && !SSL_is_init_finished(s.ssl)) {
        // --tls: the handshake, waiting for the direction it needs (the
        // socket is always writable: level-triggered, EPOLLOUT would spin).
        ERR_clear_error();
        if (int hs = SSL_do_handshake(s.ssl); hs != 1) {
          int why = SSL_get_error(s.ssl, hs);
          ERR_clear_error();
          if (why == SSL_ERROR_WANT_READ || why == SSL_ERROR_WANT_WRITE) {
            watch(events[e].data.u32, why == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLIN | EPOLLOUT);
            continue;
          }
          if (!failed) std::fprintf(stderr, "storm: TLS handshake failed\n");
          ++failed, close_sock(s);
          continue;
        }
      }
      if (!s.out.empty()) {
        FlushOut(s);
        watch(events[e].data.u32, s.out.empty() ? EPOLLIN : EPOLLIN | EPOLLOUT);
      }
      char buf[65536];
      bool closed = false;
      for (;;) {
        ssize_t got = Receive(s, buf, sizeof(buf));
        if (got == 0) closed = true;
        if (got <= 0) break;
        s.in.append(buf, static_cast<size_t>(got));
      }
      if (!s.upgraded) {
        auto end = s.in.find("\r\n\r\n");
        if (end == std::string::npos) {
          if (closed) {
            if (!failed)
              std::fprintf(stderr, "storm: closed before the upgrade (%s)\n", std::strerror(errno));
            ++failed, close_sock(s);
          }
          continue;
        }
        if (s.in.compare(0, 12, "HTTP/1.1 101") != 0) {
          if (!failed)
            std::fprintf(stderr, "storm: refused: %s\n", s.in.substr(0, s.in.find('\r')).c_str());
          ++failed, close_sock(s);
          continue;
        }
        s.upgraded = true;
        s.t_upgraded = NowNs();
        s.in.erase(0, end + 4);
      }
      size_t used = s.reader->Consume(s.in.data(), s.in.size(), [&](const ws::Event& ev) {
        if (ev.kind != ws::Event::Kind::kText) return;
        std::string_view f = ev.payload;
        if (Field(f, "type") != "message") return;
        int64_t seq = ToInt(Field(f, "seq"));
        if (seq != s.next_seq) ++reorder;
        s.next_seq = seq + 1;
        ++s.messages_seen;
      });
      s.in.erase(0, used);
      if (s.messages_seen >= want && !s.t_done) {
        s.t_done = NowNs();
        ++done;
      } else if (closed) {
        if (!failed)
          std::fprintf(stderr, "storm: closed after %lld of %lld messages\n",
                       static_cast<long long>(s.messages_seen), static_cast<long long>(want));
        ++failed, close_sock(s);
      }
    }
  }
  if (done + failed < socks.size()) {
    // Stuck: still open, never finished. Say where they stopped.
    size_t unsent = 0, no_answer = 0, partial = 0;
    int64_t example_seen = -1;
    for (auto& s : socks) {
      if (s.t_done || s.fd < 0) continue;
      if (!s.out.empty()) {
        ++unsent;
      } else if (!s.upgraded) {
        ++no_answer;
      } else {
        ++partial;
        example_seen = s.messages_seen;
      }
    }
    std::fprintf(stderr,
                 "storm: %zu sockets stuck after %.0f s: %zu with the request unsent, %zu with no "
                 "answer, %zu upgraded but short of messages (one has %lld of %lld)\n",
                 socks.size() - done - failed, static_cast<double>(NowNs() - t0) / 1e9, unsent,
                 no_answer, partial, static_cast<long long>(example_seen),
                 static_cast<long long>(want));
  }
  // Results as a RoundResult: ack = time to upgrade, e2e = time to hold the whole feed.
  RoundResult r;
  r.sent = socks.size();
  r.acked = done;
  r.errors = failed + (socks.size() - done - failed);
  r.dup_or_reorder = reorder;
  for (auto& s : socks) {
    if (s.t_upgraded) r.ack.push_back(s.t_upgraded - t0);
    if (s.t_done) r.e2e.push_back(s.t_done - t0);
    if (s.fd >= 0) close_sock(s);
  }
  r.send_secs = static_cast<double>(NowNs() - t0) / 1e9;
  WriteResult(out, r);
  (void)ReadAll(in, &c, 1);
  return 0;
}

// Live traffic while a storm runs: two connected users outside it, one
// message every 10 ms from one to the other, each timed from its send to the
// other's receipt (a closed loop: one in flight at a time). What a device
// already online sees of the storm (its network thread's other work).
class LiveProbe {
 public:
  explicit LiveProbe(uint16_t port) {
    auto a = Login(port, "storm-probe-a", "bench-password");
    auto b = Login(port, "storm-probe-b", "bench-password");
    conv_ = OpenConversation(port, a, "storm-probe-b");
    a_ = WsClient::Connect(port, a.token);
    b_ = WsClient::Connect(port, b.token);
    if (!a_ || !b_) throw std::runtime_error("the storm's probe could not connect");
  }
  void Start() {
    thread_ = std::thread([this] {
      for (int i = 0; !stop_.load(); ++i) {
        int64_t t0 = NowNs();
        a_->SendJson({{"type", "send"},
                      {"conversation_id", conv_},
                      {"client_msg_id", "probe-" + std::to_string(i)},
                      {"body", "probe"}});
        if (!b_->NextOfType("message", 30000) || !a_->NextOfType("ack", 30000)) {
          failed_ = true;
          return;
        }
        ns_.push_back(NowNs() - t0);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    });
  }
  // Stops it; the latencies, or an error if a message did not arrive.
  std::vector<int64_t> Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (failed_) throw std::runtime_error("a probe message did not arrive within 30 s");
    return std::move(ns_);
  }

 private:
  std::string conv_;
  std::unique_ptr<WsClient> a_, b_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool failed_ = false;  // the thread's, read after the join
  std::vector<int64_t> ns_;
};

int ReconnectStorm(Target& t, int nusers, int msgs, int procs, bool tls_resume,
                   json::object& report) {
  Plan plan = MakePlan(t, nusers, 100, procs);
  plan.tls_resume = tls_resume;
  nusers = static_cast<int>(plan.users.size());
  std::fprintf(stderr, "each of %d users sends %d messages, then all disconnect...\n", nusers,
               msgs);
  Fleet fleet(procs, nusers, [&](int w, int lo, int hi, int in, int out) {
    return StormWorker(plan, msgs, w, lo, hi, in, out);
  });
  if (!fleet.AllReady()) throw std::runtime_error("a worker failed to fill the feeds");
  std::this_thread::sleep_for(std::chrono::seconds(3));  // the closes settle (presence debounce)
  LiveProbe probe(t.port);
  // TLS handshakes pigeond completed, and how many of them resumed a session.
  auto handshakes = [&t] {
    auto m = Http(t.port, "GET", "/metrics").body;
    return std::pair(MetricIn(m, "pigeon_tls_handshakes_total").value_or(0.0),
                     MetricIn(m, "pigeon_tls_handshakes_resumed_total").value_or(0.0));
  };
  auto hs0 = handshakes();
  double cpu0 = CpuSeconds(t.pid);
  auto threads0 = ThreadUsage(t.pid);
  int64_t rss0 = StatusKb(t.pid, "VmRSS");
  probe.Start();
  fleet.Go();
  RoundResult r;
  if (!fleet.Collect(r)) throw std::runtime_error("a worker failed");
  auto live_ns = probe.Stop();
  auto live = Summarize(live_ns);
  double cpu1 = CpuSeconds(t.pid);
  auto hs1 = handshakes();
  json::object cpu_by_thread;  // seconds, by thread group (pg-net, pg-tls, pg-worker...)
  for (auto& [name, use] : ThreadUsage(t.pid)) {
    double d = use.cpu_s - threads0[name].cpu_s;
    if (d >= 0.005) cpu_by_thread[name] = d;
  }
  auto up = Summarize(r.ack), all = Summarize(r.e2e);
  bool ok = r.acked == r.sent && r.dup_or_reorder == 0;
  std::printf(
      "reconnect storm   %d devices at once from %d processes, each replaying %d messages\n",
      nusers, procs, 2 * msgs);
  std::printf("caught up         %llu of %llu in %.2f s; server CPU %.2f s; RSS %lld -> %lld KiB\n",
              (unsigned long long)r.acked, (unsigned long long)r.sent, all.max / 1e3, cpu1 - cpu0,
              (long long)rss0, (long long)StatusKb(t.pid, "VmRSS"));
  // Less the one of the request that read hs1.
  const double tls_handshakes = hs1.first > hs0.first ? hs1.first - hs0.first - 1 : 0;
  if (tls_handshakes > 0)
    std::printf("TLS handshakes    %.0f, of which resumed %.0f\n", tls_handshakes,
                hs1.second - hs0.second);
  std::printf("server CPU by thread");
  for (auto& [name, secs] : cpu_by_thread)
    std::printf("; %s %.2f s", std::string(name).c_str(), secs.as_double());
  std::printf("\n");
  PrintLatencyHeader();
  PrintLatency("upgraded", up);
  PrintLatency("feed replayed", all);
  PrintLatency("live meanwhile", live);
  std::printf("audit             %s: every device holds all %d messages in seq order\n",
              ok ? "PASS" : "FAIL", 2 * msgs);
  report = {{"scenario", "reconnect-storm"},
            {"devices", nusers},
            {"procs", procs},
            {"messages_per_device", 2 * msgs},
            {"caught_up", r.acked},
            {"upgraded", ToJson(up)},
            {"replayed", ToJson(all)},
            {"server_cpu_s", cpu1 - cpu0},
            {"audit_pass", ok},
            {"server_cpu_s_by_thread", std::move(cpu_by_thread)},
            {"live_during_storm", ToJson(live)},
            {"tls_handshakes", tls_handshakes},
            {"tls_handshakes_resumed", hs1.second - hs0.second}};
  return ok ? 0 : 3;
}

// Stores `messages` messages (bursts from 1,000 users), SIGKILLs pigeond and
// restarts it: the time from the restart until /readyz answers 200.
int Restart(Target& t, int64_t messages, int runs, json::object& report) {
  if (!t.own) throw std::runtime_error("restart needs its own pigeond (no --port)");
  Plan plan = MakePlan(t, 1000, 100, 2);
  const uint64_t per_round = 40;  // 40,000 messages per burst round
  std::vector<Round> rounds(static_cast<size_t>((messages + 1000 * per_round - 1) /
                                                (1000 * static_cast<int64_t>(per_round))));
  for (auto& r : rounds) r.burst = per_round;
  json::array times;
  std::vector<int64_t> ns;
  uint64_t stored = 0;
  for (int run = 0; run < runs; ++run) {
    // Each run stores `messages` more (as a crash under load would find them:
    // much of it only in the WAL), then kills and restarts pigeond.
    int64_t f0 = NowNs();
    {
      Fleet fleet(plan.procs, 1000, [&](int w, int lo, int hi, int in, int out) {
        return TrafficWorker(plan, rounds, w, lo, hi, in, out);
      });
      if (!fleet.AllReady()) throw std::runtime_error("connect failed");
      for (size_t i = 0; i < rounds.size(); ++i) {
        fleet.Go();
        RoundResult r;
        if (!fleet.Collect(r) || r.acked != r.sent || r.lost)
          throw std::runtime_error("fill failed");
        stored += r.acked;
      }
    }
    std::fprintf(stderr, "stored %llu messages in all (%.1f s for this run's)\n",
                 (unsigned long long)stored, static_cast<double>(NowNs() - f0) / 1e9);
    t.own->Kill();
    int64_t t0 = NowNs();
    t.own->Start();  // returns once /healthz answers
    for (;;) {
      try {
        if (Http(t.own->port(), "GET", "/readyz").status == 200) break;
      } catch (...) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ns.push_back(NowNs() - t0);
    times.push_back(static_cast<double>(ns.back()) / 1e9);
    std::printf("restart %d         SIGKILL with %llu messages stored -> /readyz in %.3f s\n",
                run + 1, (unsigned long long)stored, static_cast<double>(ns.back()) / 1e9);
    std::fflush(stdout);
    plan.port = t.own->port();
  }
  t.pid = t.own->pid();
  t.port = t.own->port();
  // The data is all there: the last message of the first conversation.
  auto r = Http(t.port, "GET", "/api/v1/conversations", "", plan.users[0].token);
  uint64_t last_seq =
      r.json.at("conversations").as_array().at(0).at("last_seq").to_number<uint64_t>();
  bool ok = r.status == 200 && last_seq > 0;
  auto s = Summarize(ns);
  std::printf("median            %.3f s (budget 2 s); audit %s\n", s.p50 / 1e3,
              ok ? "PASS" : "FAIL");
  report = {{"scenario", "restart"},
            {"messages", stored},
            {"ready_seconds", times},
            {"median_s", s.p50 / 1e3},
            {"audit_pass", ok}};
  return ok ? 0 : 3;
}

std::vector<double> ParseRates(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stod(item));
  return out;
}

}  // namespace pigeon::bench

int main(int argc, char** argv) {
  using namespace pigeon::bench;
  CLI::App app{"pigeon-bench: load generator and meter for pigeond"};
  app.require_subcommand(1);
  uint16_t port = 0;
  pid_t pid = 0;
  std::string json_out;
  int procs = 2;
  std::vector<std::string> server_args;
  app.add_option("--port", port,
                 "measure a running pigeond on 127.0.0.1:PORT (default: start one)");
  app.add_option("--pid", pid, "its process id (with --port)");
  app.add_option("--json", json_out, "also write the results to this file");
  app.add_option("--procs", procs, "load generator processes (each from its own 127.0.0.x)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  bool relay = false;
  app.add_flag("--relay", relay,
               "measure the reference relay instead of pigeond (steady and burst only): bare, "
               "non-durable, one thread (tools/reference_relay.h), under the same load; this "
               "machine's floor in the same run, for the budget's ratios");
  bool uws = false;
  app.add_flag("--uws", uws,
               "measure uWebSockets instead of pigeond (steady and burst only): the budget's own "
               "peer, uWS.js through Node (tools/uws_relay), non-durable, under the same load");
  app.add_option("--server-arg", server_args,
                 "passed to the pigeond it starts, e.g. --server-arg=--commit-delay-us=500");
  bool tls = false;
  app.add_flag("--tls", tls,
               "the pigeond it starts serves TLS, with a self-signed certificate made for the "
               "run, and every connection speaks it (not with --relay, --uws or --port)");
  int sockets = 5000;
  auto* idle = app.add_subcommand("idle", "memory per idle authenticated WebSocket");
  idle->add_option("--sockets", sockets, "sockets to open")->capture_default_str();
  int users = 1000, body = 100;
  double duration = 10;
  std::string rates = "5000";
  auto* steady = app.add_subcommand("steady", "open-loop 1:1 traffic at each rate in turn");
  steady->add_option("--users", users, "connected users (pairs share a conversation)")
      ->capture_default_str();
  steady->add_option("--rate,--rates", rates, "messages per second in total; a list sweeps")
      ->capture_default_str();
  steady->add_option("--duration", duration, "seconds of sending per rate")->capture_default_str();
  steady->add_option("--body-bytes", body, "message body size")->capture_default_str();
  bool pace = false;
  steady->add_flag("--pace", pace,
                   "send each message at its due time, to the microsecond (default: what is due "
                   "goes out whenever a load process wakes, on a frame or every 1 ms)");
  int burst_msgs = 20;
  auto* burst = app.add_subcommand("burst", "every user sends N messages at once");
  burst->add_option("--users", users, "connected users")->capture_default_str();
  burst->add_option("--messages", burst_msgs, "messages per user")->capture_default_str();
  burst->add_option("--body-bytes", body, "message body size")->capture_default_str();
  int pending = 10000;
  auto* catchup = app.add_subcommand(
      "catchup", "an offline device pulls its pending messages with the feed API");
  catchup->add_option("--messages", pending, "messages waiting")->capture_default_str();
  int storm_users = 10000, storm_msgs = 10;
  auto* storm = app.add_subcommand(
      "reconnect-storm", "every device reconnects at once with since and replays its feed");
  storm->add_option("--users", storm_users, "devices")->capture_default_str();
  bool storm_resume = false;
  storm->add_flag("--tls-resume", storm_resume,
                  "with --tls: each device resumes its session from before the storm (its ticket)");
  storm->add_option("--messages", storm_msgs, "messages each user sent before the storm")
      ->capture_default_str();
  int64_t stored = 1000000;
  int restart_runs = 3;
  auto* restart = app.add_subcommand("restart", "SIGKILL with N messages stored; time to /readyz");
  restart->add_option("--messages", stored, "messages stored before the kill")
      ->capture_default_str();
  restart->add_option("--runs", restart_runs, "kills and restarts")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  Target target;
  json::object report;
  int rc;
  std::string tls_dir;
  if (tls) {
    if (relay || uws || port != 0) {
      std::cerr << "--tls goes with a pigeond this starts\n";
      return 2;
    }
    char tmpl[] = "/tmp/pigeon-bench-tls.XXXXXX";
    tls_dir = ::mkdtemp(tmpl);
    WriteSelfSignedCertificate(tls_dir + "/cert.pem", tls_dir + "/key.pem");
    UseTls(tls_dir + "/cert.pem");
    server_args.insert(server_args.end(), {"--tls-cert-file", tls_dir + "/cert.pem",
                                           "--tls-key-file", tls_dir + "/key.pem"});
  }
  try {
    if (relay || uws) {
      if (relay && uws) {
        std::cerr << "--relay or --uws, not both\n";
        return 2;
      }
      if (port != 0 || !server_args.empty() || !(steady->parsed() || burst->parsed())) {
        std::cerr << (relay ? "--relay" : "--uws")
                  << " goes with steady or burst, and neither --port nor --server-arg\n";
        return 2;
      }
      if (relay)
        target.StartRelay(users + users % 2);
      else
        target.StartUws(users + users % 2);
    } else if (port == 0) {
      int need = idle->parsed()      ? sockets
                 : catchup->parsed() ? 2
                 : storm->parsed()   ? storm_users + storm_users % 2
                 : restart->parsed() ? 1000
                                     : users + users % 2;
      target.StartOwn(need, server_args);
    } else {
      if (pid == 0) {
        std::cerr << "--pid is needed with --port\n";
        return 2;
      }
      target.port = port;
      target.pid = pid;
    }
    if (idle->parsed()) {
      rc = Idle(target, sockets, std::max(procs, (sockets + 18999) / 19000), report);
    } else if (catchup->parsed()) {
      rc = Catchup(target, pending, report);
    } else if (storm->parsed()) {
      rc = ReconnectStorm(target, storm_users, storm_msgs,
                          std::max(procs, (storm_users + 18999) / 19000), storm_resume, report);
    } else if (restart->parsed()) {
      rc = Restart(target, stored, restart_runs, report);
    } else if (burst->parsed()) {
      Plan plan = MakePlan(target, users, body, procs);
      rc = Traffic(target, plan, {Round{.burst = static_cast<uint64_t>(burst_msgs)}}, "burst",
                   report);
    } else {
      Plan plan = MakePlan(target, users, body, procs, pace);
      std::vector<Round> rounds;
      for (double r : ParseRates(rates)) rounds.push_back(Round{.rate = r, .duration = duration});
      rc = Traffic(target, plan, rounds, "steady", report);
    }
  } catch (const std::exception& e) {
    std::cerr << "pigeon-bench: " << e.what() << "\n";
    rc = 1;
  }
  report["tls"] = tls;
  if (!json_out.empty()) std::ofstream(json_out) << json::serialize(report) << "\n";
  if (target.own && target.own->running()) (void)target.own->Terminate();
  if (!tls_dir.empty()) std::filesystem::remove_all(tls_dir);
  return rc;
}
