/* Bare C/pcsc-lite baseline for kiosk-bench: the same APDUs with nothing around them.
 *   pcsc-baseline READER ITERATIONS
 * Prints "c apdu_round_trip …" (SELECT) and "c read_and_authenticate …" (SELECT, three
 * READ BINARY, INTERNAL AUTHENTICATE: the exchanges of a card read, without parsing or
 * signature checks). */
#include <PCSC/winscard.h>
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

static void report(const char *name, double *s, int n) {
    double sum = 0;
    qsort(s, n, sizeof(double), cmp);
    for (int i = 0; i < n; i++) sum += s[i];
    printf("c %s n=%d mean_us=%.1f p50_us=%.1f p99_us=%.1f\n", name, n, sum / n, s[n / 2], s[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1]);
}

static SCARDHANDLE card;
static SCARD_IO_REQUEST pci;

static void xmit(const unsigned char *cmd, DWORD len) {
    unsigned char rsp[300];
    DWORD rlen = sizeof rsp;
    LONG rv = SCardTransmit(card, &pci, cmd, len, NULL, rsp, &rlen);
    if (rv != SCARD_S_SUCCESS || rlen < 2 || rsp[rlen - 2] != 0x90) {
        fprintf(stderr, "transmit failed: %lx (%lu bytes)\n", (unsigned long)rv, (unsigned long)rlen);
        exit(1);
    }
}

int main(int argc, char **argv) {
    const char *reader = argc > 1 ? argv[1] : "Virtual PCD 00 00";
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    SCARDCONTEXT ctx;
    DWORD proto;
    if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx) != SCARD_S_SUCCESS) { fprintf(stderr, "no pcscd\n"); return 1; }
    if (SCardConnect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &card, &proto) != SCARD_S_SUCCESS) {
        fprintf(stderr, "no card in %s\n", reader); return 1;
    }
    pci.dwProtocol = proto;
    pci.cbPciLength = sizeof pci;
    static const unsigned char select[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xF1, 0x48, 0x55, 0x49, 0x4D, 0x49, 0x4E, 0x01, 0x00};
    unsigned char read1[] = {0x00, 0xB0, 0x81, 0x00, 0x00}, read2[] = {0x00, 0xB0, 0x82, 0x00, 0x00}, read3[] = {0x00, 0xB0, 0x83, 0x00, 0x00};
    unsigned char auth[5 + 32 + 1] = {0x00, 0x88, 0x00, 0x00, 0x20};
    for (int i = 0; i < 32; i++) auth[5 + i] = (unsigned char)rand();
    auth[37] = 0x00;
    double *s = malloc(sizeof(double) * n);
    for (int i = 0; i < 50; i++) xmit(select, sizeof select);
    for (int i = 0; i < n; i++) { double t = now_us(); xmit(select, sizeof select); s[i] = now_us() - t; }
    report("apdu_round_trip", s, n);
    int m = n / 5 < 50 ? 50 : n / 5;
    for (int i = 0; i < m; i++) {
        double t = now_us();
        xmit(select, sizeof select); xmit(read1, 5); xmit(read2, 5); xmit(read3, 5); xmit(auth, sizeof auth);
        s[i] = now_us() - t;
    }
    report("read_and_authenticate", s, m);
    SCardDisconnect(card, SCARD_LEAVE_CARD);
    SCardReleaseContext(ctx);
    return 0;
}
