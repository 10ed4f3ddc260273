// The floor of "decision + commit" (issue 11): two bare durable SQLite transactions, WAL,
// synchronous=FULL, on the same disk and with rows the size of a settlement record, with
// nothing else. Prints p50/p99 in microseconds.
//   cc -O2 -o sqlite-floor sqlite-floor.c -lsqlite3
//   ./sqlite-floor DB ITERATIONS ROW_BYTES
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static void must(int rc, sqlite3 *db, const char *what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) { fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db)); exit(1); }
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: sqlite-floor DB ITERATIONS ROW_BYTES\n"); return 64; }
    int n = atoi(argv[2]), bytes = atoi(argv[3]);
    sqlite3 *db;
    must(sqlite3_open(argv[1], &db), db, "open");
    must(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                          "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB NOT NULL, state INTEGER NOT NULL)", 0, 0, 0), db, "setup");
    sqlite3_stmt *ins, *upd, *begin, *commit;
    must(sqlite3_prepare_v2(db, "INSERT INTO t (body, state) VALUES (?, 0)", -1, &ins, 0), db, "prepare");
    must(sqlite3_prepare_v2(db, "UPDATE t SET state = 1 WHERE id = ?", -1, &upd, 0), db, "prepare");
    must(sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, 0), db, "prepare");
    must(sqlite3_prepare_v2(db, "COMMIT", -1, &commit, 0), db, "prepare");
    char *body = malloc(bytes);
    double *lat = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < bytes; j++) body[j] = (char)('a' + (i + j) % 26);
        double t0 = now_us();
        sqlite3_step(begin); sqlite3_reset(begin);
        sqlite3_bind_blob(ins, 1, body, bytes, SQLITE_STATIC);
        must(sqlite3_step(ins), db, "insert"); sqlite3_reset(ins);
        sqlite3_int64 id = sqlite3_last_insert_rowid(db);
        must(sqlite3_step(commit), db, "commit"); sqlite3_reset(commit);
        sqlite3_step(begin); sqlite3_reset(begin);
        sqlite3_bind_int64(upd, 1, id);
        must(sqlite3_step(upd), db, "update"); sqlite3_reset(upd);
        must(sqlite3_step(commit), db, "commit"); sqlite3_reset(commit);
        lat[i] = now_us() - t0;
    }
    qsort(lat, n, sizeof(double), cmp);
    printf("floor two_durable_transactions n=%d p50_us=%.1f p99_us=%.1f max_us=%.1f\n", n, lat[n / 2], lat[n * 99 / 100], lat[n - 1]);
    sqlite3_close(db);
    return 0;
}
