/* Bare C/pcsc-lite baseline for kiosk-bench: the same APDUs and the spec's own signature
 * work with nothing around them.
 *   pcsc-baseline READER ITERATIONS [CARD_NUMBER DEVICE_SEED_HEX CERTIFICATE_HEX TEMPLATE_HEX ISSUER_KEY_HEX]
 * Prints "c apdu_round_trip …" (SELECT), "c exchanges_only …" (SELECT, three READ BINARY,
 * INTERNAL AUTHENTICATE: the exchanges of a card read, nothing checked) and, with the keys,
 * "c read_and_authenticate …": those exchanges and the three Ed25519 verifications the card
 * spec demands of every tap (issue 24 item 1), with OpenSSL: the issuer's signature over
 * EF.HOLDER (§3.2), the card's INTERNAL AUTHENTICATE answer over "CARD-AUTH-V2" ‖ number ‖
 * challenge ‖ SHA-256 of EF.USAGE (§4), and the writing device's signature over the stored
 * usage record (§5.1; this device's key: the record the bench reads is its own after the
 * first write, and a failed verification costs the same). With the write arguments also
 * "c read_authenticate_write …":
 * those five, then the v2 write (card spec §5.2): PSO VERIFY CERTIFICATE, GET CHALLENGE and
 * UPDATE BINARY of EF.USAGE with Le = 00, which the card checks (§5.3: the device's
 * signature, sequence + 1, the challenge) and acknowledges with its own signature (§5.4),
 * so the card's crypto is on both sides. The object written is the card's stored usage
 * record when this device wrote it, else TEMPLATE (a §5.1 record of this device), with
 * DF43 = stored + 1 and DF48 = the challenge, signed with the device key (OpenSSL Ed25519),
 * and the card's acknowledgement verified over "USAGE-ACK-V2" ‖ number ‖ DF43 ‖ DF48 (§5.4). */
#include <PCSC/winscard.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
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

static unsigned char rsp[300];
static DWORD rlen;

static void xmit(const unsigned char *cmd, DWORD len) {
    rlen = sizeof rsp;
    LONG rv = SCardTransmit(card, &pci, cmd, len, NULL, rsp, &rlen);
    if (rv != SCARD_S_SUCCESS || rlen < 2 || rsp[rlen - 2] != 0x90) {
        fprintf(stderr, "transmit failed: %lx (%lu bytes)\n", (unsigned long)rv, (unsigned long)rlen);
        exit(1);
    }
}

static size_t unhex(const char *h, unsigned char *out, size_t max) {
    size_t n = 0;
    for (; h[0] && h[1] && n < max; h += 2) { unsigned int b; sscanf(h, "%2x", &b); out[n++] = (unsigned char)b; }
    return n;
}

/* One BER-TLV at p (limit end): tag, value start and length; returns the next position or NULL. */
static const unsigned char *tlv(const unsigned char *p, const unsigned char *end, unsigned *tag, const unsigned char **val, size_t *len) {
    if (p >= end) return NULL;
    *tag = *p++;
    if ((*tag & 0x1F) == 0x1F) do { if (p >= end) return NULL; *tag = (*tag << 8) | *p; } while (*p++ & 0x80);
    if (p >= end) return NULL;
    if (*p < 0x80) *len = *p++;
    else if (*p == 0x81 && p + 1 < end) { *len = p[1]; p += 2; }
    else if (*p == 0x82 && p + 2 < end) { *len = (size_t)p[1] << 8 | p[2]; p += 3; }
    else return NULL;
    if (p + *len > end) return NULL;
    *val = p;
    return p + *len;
}

/* The 72 object's value inside a READ BINARY of EF.USAGE, or NULL (empty or not one). */
static const unsigned char *usage_value(const unsigned char *file, size_t n, size_t *len) {
    unsigned tag; const unsigned char *val;
    if (!tlv(file, file + n, &tag, &val, len) || tag != 0x72) return NULL;
    return val;
}

/* Position of a tag's value inside a 72 value, or NULL. */
static unsigned char *find(unsigned char *v, size_t n, unsigned want, size_t *len) {
    const unsigned char *p = v, *val; unsigned tag;
    while ((p = tlv(p, v + n, &tag, &val, len))) if (tag == want) return (unsigned char *)val;
    return NULL;
}

static EVP_MD_CTX *vmd;
static long verify_failures;

/* One Ed25519 verification with a raw 32-byte public key; a failure is counted, not fatal. */
static void verify(const unsigned char *pub, const unsigned char *sig, const unsigned char *msg, size_t len) {
    EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    EVP_MD_CTX_reset(vmd);
    if (!k || EVP_DigestVerifyInit(vmd, NULL, NULL, NULL, k) != 1 || EVP_DigestVerify(vmd, sig, 64, msg, len) != 1) verify_failures++;
    EVP_PKEY_free(k);
}

/* The three verifications of a tap (see the top): holder = READ BINARY 81's data, sigfile =
 * 82's, usage = 83's, auth = the 64-byte answer to `challenge`. Fills the card's key and number. */
static void verify_tap(const unsigned char *holder, size_t hn, const unsigned char *sigfile, size_t sn, const unsigned char *usage, size_t un,
                       const unsigned char *challenge, const unsigned char *auth, const unsigned char *issuer, const unsigned char *devpub,
                       unsigned char cardkey[32], char number[17]) {
    unsigned tag; const unsigned char *val, *end; size_t len, l;
    end = tlv(holder, holder + hn, &tag, &val, &len);
    size_t holderlen = (size_t)(end - holder);
    unsigned char *k = find((unsigned char *)val, len, 0xDF29, &l), *num = find((unsigned char *)val, len, 0xDF21, &l);
    if (!k || !num) { fprintf(stderr, "EF.HOLDER without DF29/DF21\n"); exit(1); }
    memcpy(cardkey, k, 32); memcpy(number, num, 16); number[16] = 0;
    tlv(sigfile, sigfile + sn, &tag, &val, &len);
    unsigned char *isig = find((unsigned char *)val, len, 0xDF31, &l);
    if (!isig) { fprintf(stderr, "EF.SIGNATURE without DF31\n"); exit(1); }
    verify(issuer, isig, holder, holderlen);
    end = tlv(usage, usage + un, &tag, &val, &len);
    unsigned char digest[32], msg[300];
    SHA256(usage, (size_t)(end - usage), digest);
    size_t ml = 0;
    memcpy(msg, "CARD-AUTH-V2", 12); ml = 12; memcpy(msg + ml, number, 16); ml += 16;
    memcpy(msg + ml, challenge, 32); ml += 32; memcpy(msg + ml, digest, 32); ml += 32;
    verify(cardkey, auth, msg, ml);
    unsigned char *dsig = len ? find((unsigned char *)val, len, 0xDF46, &l) : NULL;
    if (dsig) {
        size_t signedlen = (size_t)(dsig - 3 - val);
        memcpy(msg, "USAGE-V2", 8); ml = 8; memcpy(msg + ml, number, 16); ml += 16;
        memcpy(msg + ml, val, signedlen); ml += signedlen;
        verify(devpub, dsig, msg, ml);
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
    report("exchanges_only", s, m);
    vmd = EVP_MD_CTX_new();
    unsigned char issuer[32], devpub[32], cardkey[32];
    char cardnumber[17];
    int keys = argc > 7;
    if (keys) {
        unhex(argv[7], issuer, sizeof issuer);
        unsigned char seed[32]; size_t pl = 32;
        unhex(argv[4], seed, sizeof seed);
        EVP_PKEY *dk = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
        EVP_PKEY_get_raw_public_key(dk, devpub, &pl);
        EVP_PKEY_free(dk);
        unsigned char h[300], g[300], u[300]; size_t hn, gn, un;
        for (int i = 0; i < m; i++) {
            double t = now_us();
            xmit(select, sizeof select);
            xmit(read1, 5); hn = rlen - 2; memcpy(h, rsp, hn);
            xmit(read2, 5); gn = rlen - 2; memcpy(g, rsp, gn);
            xmit(read3, 5); un = rlen - 2; memcpy(u, rsp, un);
            for (int j = 0; j < 32; j++) auth[5 + j] = (unsigned char)rand();
            xmit(auth, sizeof auth);
            verify_tap(h, hn, g, gn, u, un, auth + 5, rsp, issuer, devpub, cardkey, cardnumber);
            s[i] = now_us() - t;
        }
        report("read_and_authenticate", s, m);
    }
    if (argc > 6) {
        const char *number = argv[3];
        unsigned char seed[32], cert[255], tmpl[255], apdu[5 + 255 + 1], msg[300], obj[255], sig[64];
        unhex(argv[4], seed, sizeof seed);
        size_t certlen = unhex(argv[5], cert, sizeof cert), tmpllen = unhex(argv[6], tmpl, sizeof tmpl);
        EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, 32);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char pso[5 + 255] = {0x00, 0x2A, 0x00, 0xBE, (unsigned char)certlen};
        memcpy(pso + 5, cert, certlen);
        static const unsigned char challenge[] = {0x00, 0x84, 0x00, 0x00, 0x10};
        size_t dlen = 0;
        const unsigned char *did = NULL;
        { unsigned char t[255]; memcpy(t, tmpl, tmpllen); size_t vl; unsigned char *v = (unsigned char *)usage_value(t, tmpllen, &vl);
          if (!v || !find(v, vl, 0xDF44, &dlen)) { fprintf(stderr, "template is not a usage record\n"); return 1; }
          did = tmpl + (find(v, vl, 0xDF44, &dlen) - t); }
        for (int i = 0; i < m; i++) {
            double t = now_us();
            unsigned char h[300], g[300]; size_t hn, gn;
            xmit(select, sizeof select);
            xmit(read1, 5); hn = rlen - 2; memcpy(h, rsp, hn);
            xmit(read2, 5); gn = rlen - 2; memcpy(g, rsp, gn);
            xmit(read3, 5);
            size_t storedlen = rlen - 2, vl, l;
            unsigned char stored[300]; memcpy(stored, rsp, storedlen);
            unsigned seq = 0;
            const unsigned char *sv = usage_value(stored, storedlen, &vl);
            unsigned char *sseq = sv ? find((unsigned char *)sv, vl, 0xDF43, &l) : NULL;
            if (sseq) seq = (unsigned)sseq[0] << 24 | sseq[1] << 16 | sseq[2] << 8 | sseq[3];
            unsigned char *sdev = sv ? find((unsigned char *)sv, vl, 0xDF44, &l) : NULL;
            /* This device's own stored record, else the template. */
            size_t objlen;
            if (sdev && l == dlen && memcmp(sdev, did, dlen) == 0) { objlen = (size_t)(sv - stored) + vl; memcpy(obj, stored, objlen); }
            else { objlen = tmpllen; memcpy(obj, tmpl, tmpllen); }
            for (int j = 0; j < 32; j++) auth[5 + j] = (unsigned char)rand();
            xmit(auth, sizeof auth);
            if (keys) verify_tap(h, hn, g, gn, stored, storedlen, auth + 5, rsp, issuer, devpub, cardkey, cardnumber);
            xmit(pso, 5 + certlen);
            xmit(challenge, sizeof challenge);
            unsigned char *v = (unsigned char *)usage_value(obj, objlen, &vl);
            unsigned char *dseq = find(v, vl, 0xDF43, &l), *dchal = find(v, vl, 0xDF48, &l), *dsig = find(v, vl, 0xDF46, &l);
            seq++;
            dseq[0] = seq >> 24; dseq[1] = seq >> 16; dseq[2] = seq >> 8; dseq[3] = seq;
            memcpy(dchal, rsp, 16);
            /* "USAGE-V2" ‖ card number ‖ the 72 value before DF46 (tag and length: 3 bytes). */
            size_t ml = 0, signedlen = (size_t)(dsig - 3 - v);
            memcpy(msg, "USAGE-V2", 8); ml = 8;
            memcpy(msg + ml, number, strlen(number)); ml += strlen(number);
            memcpy(msg + ml, v, signedlen); ml += signedlen;
            size_t siglen = sizeof sig;
            if (EVP_DigestSignInit(md, NULL, NULL, NULL, key) != 1 || EVP_DigestSign(md, sig, &siglen, msg, ml) != 1) { fprintf(stderr, "sign failed\n"); return 1; }
            memcpy(dsig, sig, 64);
            apdu[0] = 0x00; apdu[1] = 0xD6; apdu[2] = 0x83; apdu[3] = 0x00; apdu[4] = (unsigned char)objlen;
            memcpy(apdu + 5, obj, objlen); apdu[5 + objlen] = 0x00;
            xmit(apdu, 6 + objlen);
            if (rlen != 66) { fprintf(stderr, "no acknowledgement (%lu bytes)\n", (unsigned long)rlen); return 1; }
            if (keys) {   /* "USAGE-ACK-V2" ‖ number ‖ DF43 ‖ DF48, by the card's key */
                unsigned char ack[64];
                memcpy(ack, rsp, 64);
                ml = 0; memcpy(msg, "USAGE-ACK-V2", 12); ml = 12; memcpy(msg + ml, number, 16); ml += 16;
                memcpy(msg + ml, dseq, 4); ml += 4; memcpy(msg + ml, dchal, 16); ml += 16;
                verify(cardkey, ack, msg, ml);
            }
            s[i] = now_us() - t;
        }
        report("read_authenticate_write", s, m);
        if (keys) fprintf(stderr, "pcsc-baseline: %ld verifications did not verify (a record of another device counts here)\n", verify_failures);
        EVP_MD_CTX_free(md); EVP_PKEY_free(key);
    }
    SCardDisconnect(card, SCARD_LEAVE_CARD);
    SCardReleaseContext(ctx);
    return 0;
}
