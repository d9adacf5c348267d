// pigeon-bench: load generator and meter for pigeond. Speaks the public
// protocol like real devices over loopback.
//
//   pigeon-bench idle   --sockets 5000        memory per idle authenticated WebSocket
//   pigeon-bench steady --rate 5000 --users 1000 --duration 10
//                                             open-loop 1:1 traffic; ack and end-to-end
//                                             latency; audit of every message; server CPU
//   pigeon-bench catchup --messages 10000     an offline device pulls its feed
//
// By default it starts its own pigeond (fresh data directory, fsync on) and
// measures that process; --port/--pid measure a running one instead.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "client/pigeon_client.h"

namespace pigeon::bench {
namespace json = boost::json;
using namespace ::pigeon::client;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- /proc readings -------------------------------------------------------------

int64_t StatusKb(pid_t pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  return -1;
}

int64_t MeminfoKb(const std::string& field) {
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  return -1;
}

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

// utime + stime of a process, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto close = s.rfind(')');
  std::istringstream rest(s.substr(close + 2));
  std::string tok;
  std::vector<std::string> fields;
  while (rest >> tok) fields.push_back(tok);
  // fields[0] is field 3 (state); utime is field 14, stime 15.
  double ticks = std::stod(fields[11]) + std::stod(fields[12]);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
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

json::object ToJson(const Summary& s) {
  return {{"count", s.n},    {"p50_ms", s.p50},   {"p90_ms", s.p90},
          {"p99_ms", s.p99}, {"p999_ms", s.p999}, {"max_ms", s.max}};
}

// ---- raw non-blocking WebSocket client ------------------------------------------------

struct Sock {
  int fd = -1;
  std::string in;
  std::string out;
  std::unique_ptr<ws::FrameReader> reader;
  int user = 0;
  int64_t next_seq = 1;  // the next seq this socket should see in its conversation
};

// Blocking connect + upgrade; then the socket is made non-blocking.
int OpenWs(uint16_t port, const std::string& token, int source_index, std::string* leftover) {
  int fd = ConnectLoopback(port, source_index);
  if (fd < 0) return -1;
  std::string req = "GET /api/v1/ws HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
                    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return -1;
  }
  std::string buf;
  char tmp[4096];
  while (buf.find("\r\n\r\n") == std::string::npos) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) break;
    ssize_t n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
  }
  auto end = buf.find("\r\n\r\n");
  if (end == std::string::npos || buf.compare(0, 12, "HTTP/1.1 101") != 0) {
    ::close(fd);
    return -1;
  }
  *leftover = buf.substr(end + 4);
  return fd;
}

void FlushOut(Sock& s) {
  while (!s.out.empty()) {
    ssize_t n = ::send(s.fd, s.out.data(), s.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) return;
    s.out.erase(0, static_cast<size_t>(n));
  }
}

// Creates `n` users (bench-<i>) and logs each in once, in parallel.
std::vector<Account> MakeUsers(uint16_t port, int n, const std::string& prefix) {
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

// ---- scenarios ----------------------------------------------------------------------

int Idle(uint16_t port, pid_t pid, int sockets, int source_addrs, json::object& report) {
  std::cerr << "creating " << sockets << " users...\n";
  auto users = MakeUsers(port, sockets, "idle-");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  int64_t rss0 = StatusKb(pid, "VmRSS"), slab0 = MeminfoKb("Slab"), tcp0 = SockstatTcpMemPages();
  std::vector<int> fds;
  for (int i = 0; i < sockets; ++i) {
    std::string leftover;
    int fd = OpenWs(port, users[i].token, source_addrs > 1 ? 1 + i % source_addrs : 0, &leftover);
    if (fd < 0) {
      std::cerr << "connection " << i << " failed\n";
      return 1;
    }
    fds.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));
  int64_t rss1 = StatusKb(pid, "VmRSS"), slab1 = MeminfoKb("Slab"), tcp1 = SockstatTcpMemPages();
  double user_b = static_cast<double>(rss1 - rss0) * 1024.0 / sockets;
  // Both ends of each connection are on this machine: kernel figures cover a pair.
  double slab_b = static_cast<double>(slab1 - slab0) * 1024.0 / sockets;
  double tcp_b = static_cast<double>(tcp1 - tcp0) * 4096.0 / sockets;
  std::printf("idle sockets            %d\n", sockets);
  std::printf("pigeond RSS             %lld KiB -> %lld KiB\n", (long long)rss0, (long long)rss1);
  std::printf("user space per socket   %.0f bytes\n", user_b);
  std::printf("kernel slab per pair    %.0f bytes (client + server socket)\n", slab_b);
  std::printf("kernel TCP buffers/pair %.0f bytes\n", tcp_b);
  report = {{"scenario", "idle"},
            {"sockets", sockets},
            {"rss_before_kib", rss0},
            {"rss_after_kib", rss1},
            {"user_bytes_per_socket", user_b},
            {"kernel_slab_bytes_per_pair", slab_b},
            {"kernel_tcp_buffer_bytes_per_pair", tcp_b}};
  for (int fd : fds) ::close(fd);
  return 0;
}

int Steady(uint16_t port, pid_t pid, int nusers, double rate, double duration, int body_bytes,
           json::object& report) {
  if (nusers % 2) ++nusers;
  std::cerr << "creating " << nusers << " users and " << nusers / 2 << " conversations...\n";
  auto users = MakeUsers(port, nusers, "steady-");
  std::vector<std::string> conv(nusers);
  for (int i = 0; i < nusers; i += 2)
    conv[i] = conv[i + 1] = OpenConversation(port, users[i], users[i + 1].user_id);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Sock> socks(nusers);
  for (int i = 0; i < nusers; ++i) {
    auto& s = socks[i];
    s.fd = OpenWs(port, users[i].token, 0, &s.in);
    if (s.fd < 0) {
      std::cerr << "connect failed\n";
      return 1;
    }
    s.user = i;
    s.reader = std::make_unique<ws::FrameReader>(1 << 24, false);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev);
  }

  std::mt19937 rng(42);
  std::unordered_map<uint64_t, int64_t> sent_at;  // send id -> ns
  std::vector<int64_t> ack_lat, e2e_lat;
  ack_lat.reserve(static_cast<size_t>(rate * duration) + 16);
  e2e_lat.reserve(static_cast<size_t>(rate * duration) + 16);
  std::unordered_map<std::string, int64_t> max_acked_seq;  // conversation -> highest acked seq
  uint64_t sent = 0, acked = 0, errors = 0, dup_or_reorder = 0, gaps = 0;
  const std::string pad(static_cast<size_t>(std::max(0, body_bytes - 24)), 'x');
  uint32_t mask_seed = 0x12345678;

  double cpu0 = CpuSeconds(pid);
  const int64_t t0 = NowNs();
  const int64_t send_end = t0 + static_cast<int64_t>(duration * 1e9);
  const int64_t hard_end = send_end + 5'000'000'000;  // drain time
  std::vector<int> dirty;
  std::vector<epoll_event> events(1024);
  double cpu1 = -1;
  int64_t t_send_done = 0;
  for (;;) {
    int64_t now = NowNs();
    if (now < send_end) {
      // Open loop: as many sends as the schedule says are due by now.
      uint64_t due = static_cast<uint64_t>(static_cast<double>(now - t0) * rate / 1e9);
      for (; sent < due; ++sent) {
        int u = static_cast<int>(rng() % static_cast<unsigned>(nusers));
        auto& s = socks[u];
        std::string body = "t=" + std::to_string(now) + ";" + pad;
        json::object f{{"type", "send"},
                       {"conversation_id", conv[u]},
                       {"client_msg_id", std::to_string(sent)},
                       {"body", body}};
        mask_seed = mask_seed * 1664525u + 1013904223u;
        uint8_t mask[4];
        std::memcpy(mask, &mask_seed, 4);
        if (s.out.empty()) dirty.push_back(u);
        ws::AppendFrame(s.out, ws::kText, json::serialize(f), mask);
        sent_at[sent] = now;
      }
    } else if (cpu1 < 0) {
      cpu1 = CpuSeconds(pid);
      t_send_done = now;
    }
    for (int u : dirty) FlushOut(socks[u]);
    dirty.erase(
        std::remove_if(dirty.begin(), dirty.end(), [&](int u) { return socks[u].out.empty(); }),
        dirty.end());
    bool done = now >= send_end && acked + errors >= sent && e2e_lat.size() >= acked;
    if (done || now > hard_end) break;
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1);
    for (int k = 0; k < n; ++k) {
      auto& s = socks[events[k].data.u32];
      char buf[65536];
      for (;;) {
        ssize_t r = ::recv(s.fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r <= 0) break;
        s.in.append(buf, static_cast<size_t>(r));
      }
      int64_t rnow = NowNs();
      size_t used = s.reader->Consume(s.in.data(), s.in.size(), [&](const ws::Event& ev) {
        if (ev.kind != ws::Event::Kind::kText) return;
        auto v = json::parse(std::string(ev.payload)).as_object();
        auto type = v.at("type").as_string();
        if (type == "ack") {
          uint64_t id = std::stoull(std::string(v.at("client_msg_id").as_string()));
          ack_lat.push_back(rnow - sent_at[id]);
          ++acked;
          auto& m = max_acked_seq[std::string(v.at("conversation_id").as_string())];
          m = std::max<int64_t>(m, v.at("seq").to_number<int64_t>());
        } else if (type == "message") {
          int64_t seq = v.at("seq").to_number<int64_t>();
          if (seq < s.next_seq) {
            ++dup_or_reorder;
          } else {
            if (seq > s.next_seq) ++gaps;
            s.next_seq = seq + 1;
          }
          if (std::string(v.at("sender").as_string()) != users[s.user].user_id) {
            auto body = std::string(v.at("body").as_string());
            e2e_lat.push_back(rnow - std::stoll(body.substr(2, body.find(';') - 2)));
          }
        } else if (type == "error") {
          ++errors;
        }
      });
      s.in.erase(0, used);
    }
  }
  if (cpu1 < 0) {
    cpu1 = CpuSeconds(pid);
    t_send_done = NowNs();
  }
  // Audit: every socket saw its conversation up to the last acked seq.
  uint64_t lost = 0;
  for (int i = 0; i < nusers; ++i) {
    int64_t want = max_acked_seq.count(conv[i]) ? max_acked_seq[conv[i]] : 0;
    if (socks[i].next_seq - 1 < want) lost += static_cast<uint64_t>(want - (socks[i].next_seq - 1));
    ::close(socks[i].fd);
  }
  double secs = static_cast<double>(t_send_done - t0) / 1e9;
  auto a = Summarize(ack_lat), e = Summarize(e2e_lat);
  double cpu_us = (cpu1 - cpu0) * 1e6 / std::max<uint64_t>(1, acked);
  bool ok = lost == 0 && dup_or_reorder == 0 && gaps == 0 && errors == 0 && acked == sent;
  std::printf("offered rate      %.0f msg/s over %.1f s, %d users, %d-byte bodies\n", rate,
              duration, nusers, body_bytes);
  std::printf("sent / acked      %llu / %llu   (achieved %.0f acks/s)\n", (unsigned long long)sent,
              (unsigned long long)acked, static_cast<double>(acked) / secs);
  std::printf("                  %8s %8s %8s %8s %8s   (ms)\n", "p50", "p90", "p99", "p99.9",
              "max");
  std::printf("ack latency       %8.3f %8.3f %8.3f %8.3f %8.3f\n", a.p50, a.p90, a.p99, a.p999,
              a.max);
  std::printf("end-to-end        %8.3f %8.3f %8.3f %8.3f %8.3f\n", e.p50, e.p90, e.p99, e.p999,
              e.max);
  std::printf("server CPU        %.1f us per message (user+system)\n", cpu_us);
  std::printf("audit             %s: lost %llu, duplicate/reordered %llu, gaps %llu, errors %llu\n",
              ok ? "PASS" : "FAIL", (unsigned long long)lost, (unsigned long long)dup_or_reorder,
              (unsigned long long)gaps, (unsigned long long)errors);
  report = {{"scenario", "steady"},
            {"offered_rate", rate},
            {"duration_s", duration},
            {"users", nusers},
            {"sent", sent},
            {"acked", acked},
            {"achieved_rate", static_cast<double>(acked) / secs},
            {"ack_latency", ToJson(a)},
            {"e2e_latency", ToJson(e)},
            {"server_cpu_us_per_msg", cpu_us},
            {"lost", lost},
            {"duplicate_or_reordered", dup_or_reorder},
            {"gaps", gaps},
            {"errors", errors},
            {"audit_pass", ok}};
  return ok ? 0 : 3;
}

// A device offline while `k` messages arrive, then pulling them all with the
// feed API (pages of 1,000): the time to catch up, and an audit of the pull.
int Catchup(uint16_t port, int k, json::object& report) {
  auto users = MakeUsers(port, 2, "catchup-");
  auto conv = OpenConversation(port, users[0], users[1].user_id);
  auto ws = WsClient::Connect(port, users[0].token);
  if (!ws) throw std::runtime_error("connect failed");
  std::cerr << "sending " << k << " messages to an offline device...\n";
  const std::string body(100, 'x');
  for (int sent = 0; sent < k;) {
    int n = std::min(1000, k - sent);
    for (int i = 0; i < n; ++i)
      ws->SendJson(json::object{{"type", "send"}, {"conversation_id", conv},
                                {"client_msg_id", std::to_string(sent + i)}, {"body", body}});
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
    auto r = Http(port, "GET", "/api/v1/messages?limit=1000" + (since.empty() ? "" : "&since=" + since), "",
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
  std::printf("pulled            %d in %d pages, %.3f s (%.0f messages/s)\n", pulled, pages, secs, pulled / secs);
  std::printf("audit             %s\n", ok ? "PASS: all, in seq order" : "FAIL");
  report = {{"scenario", "catchup"}, {"pending", k}, {"pulled", pulled}, {"pages", pages}, {"seconds", secs},
            {"audit_pass", ok}};
  return ok ? 0 : 3;
}

}  // namespace pigeon::bench

int main(int argc, char** argv) {
  using namespace pigeon::bench;
  CLI::App app{"pigeon-bench: load generator and meter for pigeond"};
  app.require_subcommand(1);
  uint16_t port = 0;
  pid_t pid = 0;
  std::string json_out;
  app.add_option("--port", port,
                 "measure a running pigeond on 127.0.0.1:PORT (default: start one)");
  app.add_option("--pid", pid, "its process id (with --port)");
  app.add_option("--json", json_out, "also write the results to this file");
  int sockets = 5000, source_addrs = 1;
  auto* idle = app.add_subcommand("idle", "memory per idle authenticated WebSocket");
  idle->add_option("--sockets", sockets, "sockets to open")->capture_default_str();
  idle->add_option("--source-addrs", source_addrs, "spread over 127.0.0.2.. source addresses")
      ->capture_default_str();
  int users = 1000, body = 100;
  double rate = 5000, duration = 10;
  auto* steady = app.add_subcommand("steady", "open-loop 1:1 traffic at a fixed rate");
  steady->add_option("--users", users, "connected users (pairs share a conversation)")
      ->capture_default_str();
  steady->add_option("--rate", rate, "messages per second, in total")->capture_default_str();
  steady->add_option("--duration", duration, "seconds of sending")->capture_default_str();
  steady->add_option("--body-bytes", body, "message body size")->capture_default_str();
  int pending = 10000;
  auto* catchup = app.add_subcommand("catchup", "an offline device pulls its pending messages with the feed API");
  catchup->add_option("--messages", pending, "messages waiting")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::unique_ptr<TestServer> server;
  if (port == 0) {
    // Cheap password hashing only to make set-up fast; fsync stays on.
    server = std::make_unique<TestServer>(std::vector<std::string>{"--log-level", "warn"});
    server->Start();
    port = server->port();
    pid = server->pid();
  }
  if (pid == 0) {
    std::cerr << "--pid is needed with --port\n";
    return 2;
  }
  json::object report;
  int rc;
  try {
    if (idle->parsed()) {
      rc = Idle(port, pid, sockets, source_addrs, report);
    } else if (catchup->parsed()) {
      rc = Catchup(port, pending, report);
    } else {
      rc = Steady(port, pid, users, rate, duration, body, report);
    }
  } catch (const std::exception& e) {
    std::cerr << "pigeon-bench: " << e.what() << "\n";
    rc = 1;
  }
  if (!json_out.empty()) std::ofstream(json_out) << json::serialize(report) << "\n";
  if (server) (void)server->Terminate();
  return rc;
}
