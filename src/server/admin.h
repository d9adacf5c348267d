// `pigeond admin ...`: offline maintenance commands that open the store
// directly (pigeond must not be running on the same data directory).
//
//   pigeond admin seed-users --data-dir D --count N --password P [--prefix user-]
//                            [--start 0] [--out tokens.tsv]
//
// seed-users creates N accounts (prefix + index) in bulk, each with one
// logged-in device, and writes "user_id<TAB>device_id<TAB>token" lines. It is
// the bulk path for load tests and staging: the accounts are real (the password
// is stored as an Argon2id hash at the server's cost, and logging in with it
// works), but all seeded accounts share that one password, hashed once. Sign-up
// through the API is unchanged.
#pragma once

namespace pigeon {

// argv[1] is "admin". Returns the process exit code.
int RunAdmin(int argc, char** argv);

}  // namespace pigeon
