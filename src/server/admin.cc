#include "server/admin.h"

#include <sodium.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "core/ids.h"
#include "store/rocksdb/rocks_store.h"

namespace pigeon {
namespace {

struct SeedOptions {
  std::string data_dir = "./pigeon-data";
  std::string prefix = "user-";
  std::string password;
  std::string out = "-";
  uint64_t count = 0;
  uint64_t start = 0;
  uint64_t batch = 5000;
  uint64_t pwhash_opslimit = 2;
  uint64_t pwhash_memlimit_kib = 65536;
};

int SeedUsers(const SeedOptions& o) {
  if (o.password.size() < 8 || o.password.size() > 256) {
    std::cerr << "seed-users: --password must be 8-256 bytes\n";
    return 2;
  }
  // Names only grow with the index: the first and the last bound them all.
  if (!IsValidUserId(o.prefix + std::to_string(o.start)) ||
      !IsValidUserId(o.prefix + std::to_string(o.start + (o.count ? o.count - 1 : 0)))) {
    std::cerr << "seed-users: prefix + index must be a valid username ([a-z0-9_.-]{3,32})\n";
    return 2;
  }
  char hash[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str(hash, o.password.data(), o.password.size(), o.pwhash_opslimit,
                        o.pwhash_memlimit_kib * 1024) != 0) {
    std::cerr << "seed-users: out of memory hashing the password\n";
    return 1;
  }
  auto store = RocksStore::Open({.path = o.data_dir});
  if (!store.ok()) {
    std::cerr << "seed-users: " << store.status().message() << "\n";
    return 1;
  }
  std::ofstream file;
  if (o.out != "-") {
    file.open(o.out, std::ios::trunc);
    if (!file) {
      std::cerr << "seed-users: cannot write " << o.out << "\n";
      return 1;
    }
  }
  std::ostream& out = o.out == "-" ? std::cout : file;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<WriteOp> ops;
  std::vector<OpResult> results;
  std::string lines;
  uint64_t created = 0;
  for (uint64_t first = o.start; first < o.start + o.count; first += o.batch) {
    uint64_t end = std::min(o.start + o.count, first + o.batch);
    ops.clear();
    lines.clear();
    for (uint64_t i = first; i < end; ++i)
      ops.push_back(op::CreateUser{o.prefix + std::to_string(i), hash});
    // The sessions go in a second commit, so a user that already existed
    // (conflict) is reported rather than given a device.
    Status s = (*store)->Commit(ops, NowMs(), &results);
    if (!s.ok()) {
      std::cerr << "seed-users: " << s.message() << "\n";
      return 1;
    }
    for (size_t k = 0; k < results.size(); ++k) {
      if (!results[k].status.ok()) {
        std::cerr << "seed-users: " << std::get<op::CreateUser>(ops[k]).user_id << ": "
                  << results[k].status.message() << "\n";
        return 1;
      }
    }
    std::vector<WriteOp> sessions;
    sessions.reserve(end - first);
    for (uint64_t i = first; i < end; ++i) {
      std::string user = o.prefix + std::to_string(i), device = NewDeviceId(), token = NewToken();
      lines.append(user).append("\t").append(device).append("\t").append(token).append("\n");
      sessions.push_back(
          op::CreateSession{std::move(user), std::move(device), "seeded", TokenHash(token)});
    }
    s = (*store)->Commit(sessions, NowMs(), &results);
    if (!s.ok()) {
      std::cerr << "seed-users: " << s.message() << "\n";
      return 1;
    }
    out << lines;
    created += end - first;
  }
  out.flush();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cerr << "seed-users: created " << created << " users with one device each in " << secs
            << " s\n";
  return out ? 0 : 1;
}

}  // namespace

int RunAdmin(int argc, char** argv) {
  CLI::App app{"pigeond admin: offline maintenance (pigeond must not be running on the data dir)"};
  app.require_subcommand(1);
  SeedOptions seed;
  auto* s = app.add_subcommand(
      "seed-users",
      "create users in bulk, each with one logged-in device; prints user_id, device_id, token");
  s->add_option("--data-dir", seed.data_dir, "the store")->capture_default_str();
  s->add_option("--count", seed.count, "users to create")->required();
  s->add_option("--password", seed.password, "the password of every seeded user (8-256 bytes)")
      ->required();
  s->add_option("--prefix", seed.prefix, "usernames are PREFIX + index")->capture_default_str();
  s->add_option("--start", seed.start, "the first index")->capture_default_str();
  s->add_option("--out", seed.out, "where the tokens go (- : standard output)")
      ->capture_default_str();
  s->add_option("--batch", seed.batch, "users per commit")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000}));
  s->add_option("--pwhash-opslimit", seed.pwhash_opslimit, "Argon2id passes, as pigeond's")
      ->capture_default_str();
  s->add_option("--pwhash-memlimit-kib", seed.pwhash_memlimit_kib, "Argon2id memory, as pigeond's")
      ->capture_default_str();
  try {
    app.parse(argc - 1, argv + 1);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (sodium_init() < 0) {
    std::cerr << "libsodium failed to initialise\n";
    return 1;
  }
  return SeedUsers(seed);
}

}  // namespace pigeon
