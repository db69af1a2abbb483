/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Meters and caps (see meter.h). Everything here is pure and runs on the
 * supervisor's single thread; the reservations make the "check every cap, then
 * commit" step explicit so the event for a request can be written between the
 * two (an event that cannot be written releases the reservation: nothing that
 * was not recorded is counted).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meter-internal.h"
#include "meter.h"
#include "util/clock.h"
#include "profile.h"
#include "util/parse.h"
#include "util/error.h"
#include "util/json-fast.h"

static uint64_t sat_add(uint64_t a, uint64_t b)
{
        uint64_t r;
        return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static double pusd_to_usd(uint64_t pusd) { return (double)pusd / AJ_PUSD_PER_USD; }

/* ---- the meter ---- */

struct PriceLoader {
        int (*load)(void *userdata, AjPriceTable **ret);
        void *userdata;
        bool tried;
        AjPriceTable *table;
};

struct CallId {
        uint8_t key[AJ_SHA256_SIZE];
        bool live;     /* remembered and not claimed */
        bool judged;   /* gateway's: the broker judged this call (aj_meter_gate_missed) */
        bool used;     /* in the index */
        int16_t chain; /* the next slot in its bucket (-1: none) */
        uint32_t gen;  /* which put filled the slot (a claim gives its own back, not a copy) */
};

/* The last AJ_METER_MAX_CALL_IDS ids, the oldest overwritten, found by key without a scan:
 * an index of buckets of chains. A key is a sha256, but an id is the agent's to choose (a
 * few thousand tries put ids in one bucket of a fixed index), so the bucket comes from the
 * key mixed with a per-meter seed; a chain is never longer than the ring anyway. */
#define ID_BUCKETS (2 * AJ_METER_MAX_CALL_IDS)
struct IdRing {
        struct CallId *slot; /* allocated at the first id */
        int16_t *bucket;
        size_t next;
        uint64_t seed;
        uint32_t puts;
};

struct AjMeter {
        AjMeterCaps caps;
        uint64_t used[_AJ_CAP_MAX]; /* additive caps */
        /* Additive caps, outstanding reservations: exact, not saturated (a saturated sum less
         * one of its parts would lose the others; the reservations, each at most 2^64 - 1,
         * are far fewer than 2^64). */
        unsigned __int128 reserved[_AJ_CAP_MAX];

        /* Start times of committed tool calls, oldest first, in a ring. Bounded by
         * AJ_CAP_MAX_PER_MIN: with no rate cap the count saturates there. */
        uint64_t *window;
        size_t window_head, window_len, window_size;
        uint64_t reserved_calls;

        /* Ids of counted tool calls (sha256 of the id), a ring of AJ_METER_MAX_CALL_IDS per
         * side (AjMeterCounter: the broker's, which an agent names, never push out the
         * gateway's), allocated at the first: the newest at ids_next - 1. */
        struct IdRing ids[2];
        struct IdRing judged; /* ids the broker judged, any verdict */

        bool have_last;
        uint8_t last_key[AJ_SHA256_SIZE];
        uint64_t streak; /* committed identical calls in a row, ending with last_key */
        /* Outstanding tool-call reservations (calls awaiting their result or an approval),
         * counted per repeat key: any of them may commit next, so each is in the streak it
         * could make, whatever key the streak has now. At most one entry per outstanding
         * reservation. */
        struct PendingKey *pending;
        size_t n_pending, pending_cap;

        AjPriceTable *prices;       /* the profile's, USD per token */
        AjPriceTable *table;        /* the shipped table, under them */
        struct PriceLoader *loader; /* or the table read when a price is first needed */
        char **allow;
        size_t n_allow;
        char **deny;
        size_t n_deny;
        bool restricted; /* an allow list exists */
};

/* What is outstanding of a cap, saturated to 64 bits for its checks. */
static uint64_t reserved_of(const AjMeter *m, int cap)
{
        return m->reserved[cap] > UINT64_MAX ? UINT64_MAX : (uint64_t)m->reserved[cap];
}

struct PendingKey {
        uint8_t key[AJ_SHA256_SIZE];
        uint64_t n;
};

static struct PendingKey *pending_find(const AjMeter *m, const uint8_t key[AJ_SHA256_SIZE])
{
        for (size_t i = 0; i < m->n_pending; i++)
                if (memcmp(m->pending[i].key, key, AJ_SHA256_SIZE) == 0)
                        return &m->pending[i];
        return NULL;
}

static int pending_add(AjMeter *m, const uint8_t key[AJ_SHA256_SIZE])
{
        struct PendingKey *e = pending_find(m, key);
        if (e) {
                e->n++;
                return 0;
        }
        if (m->n_pending == m->pending_cap) {
                size_t cap = m->pending_cap ? 2 * m->pending_cap : 8;
                struct PendingKey *p = reallocarray(m->pending, cap, sizeof(*p));
                if (!p)
                        return -ENOMEM;
                m->pending = p;
                m->pending_cap = cap;
        }
        e = &m->pending[m->n_pending++];
        memcpy(e->key, key, AJ_SHA256_SIZE);
        e->n = 1;
        return 0;
}

static void pending_remove(AjMeter *m, const uint8_t key[AJ_SHA256_SIZE])
{
        struct PendingKey *e = pending_find(m, key);
        if (e && --e->n == 0)
                *e = m->pending[--m->n_pending];
}

int aj_meter_new(const AjMeterCaps *caps, AjMeter **ret)
{
        AjMeter *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        if (caps)
                m->caps = *caps;
        *ret = m;
        return 0;
}

void aj_meter_free(AjMeter *m)
{
        if (!m)
                return;
        free(m->window);
        free(m->pending);
        for (size_t i = 0; i < ARRAY_SIZE(m->ids); i++) {
                free(m->ids[i].slot);
                free(m->ids[i].bucket);
        }
        free(m->judged.slot);
        free(m->judged.bucket);
        aj_price_table_free(m->prices);
        aj_price_table_free(m->table);
        if (m->loader)
                aj_price_table_free(m->loader->table);
        free(m->loader);
        for (size_t i = 0; i < m->n_allow; i++)
                free(m->allow[i]);
        free(m->allow);
        for (size_t i = 0; i < m->n_deny; i++)
                free(m->deny[i]);
        free(m->deny);
        free(m);
}

static bool price_ok(double p) { return isfinite(p) && p >= 0 && p <= 1.0; }

int aj_meter_set_price(AjMeter *m, const char *model, double input, double output, double cached_input)
{
        if (!model || !*model || !price_ok(input) || !price_ok(output) ||
            (cached_input >= 0 && !price_ok(cached_input)) || isnan(cached_input))
                return -EINVAL;
        if (!m->prices) {
                int r = aj_price_table_new("profile", &m->prices);
                if (r < 0)
                        return r;
        }
        AjPrice p = { .model = (char *)model,
                      .input = aj_meter_usd_to_pusd(input),
                      .output = aj_meter_usd_to_pusd(output) };
        p.cache_read = cached_input < 0 ? p.input : aj_meter_usd_to_pusd(cached_input);
        p.cache_write = p.cache_write_1h = p.input;
        return aj_price_table_set(m->prices, &p);
}

int aj_meter_set_price_web_search(AjMeter *m, const char *model, double usd_per_search)
{
        if (!model || !price_ok(usd_per_search))
                return -EINVAL;
        for (size_t i = 0; m->prices && i < m->prices->n; i++)
                if (streq(m->prices->entries[i].model, model)) {
                        m->prices->entries[i].web_search = aj_meter_usd_to_pusd(usd_per_search);
                        m->prices->entries[i].web_search_priced = true;
                        return 0;
                }
        return -ENOENT;
}

int aj_meter_set_price_tool_fee(AjMeter *m, const char *model, AjToolFee fee, double usd_per_use)
{
        if (!model || fee < 0 || fee >= AJ_TOOL_FEES || !price_ok(usd_per_use))
                return -EINVAL;
        for (size_t i = 0; m->prices && i < m->prices->n; i++)
                if (streq(m->prices->entries[i].model, model)) {
                        m->prices->entries[i].tool_fee[fee] = aj_meter_usd_to_pusd(usd_per_use);
                        m->prices->entries[i].tool_fee_priced[fee] = true;
                        return 0;
                }
        return -ENOENT;
}

int aj_meter_set_price_max_output(AjMeter *m, const char *model, uint64_t tokens)
{
        if (!model || tokens < 1 || tokens > AJ_PRICE_MAX_OUTPUT_TOKENS)
                return -EINVAL;
        for (size_t i = 0; m->prices && i < m->prices->n; i++)
                if (streq(m->prices->entries[i].model, model)) {
                        m->prices->entries[i].max_output = tokens;
                        return 0;
                }
        return -ENOENT;
}

void aj_meter_set_price_table(AjMeter *m, AjPriceTable *table)
{
        aj_price_table_free(m->table);
        m->table = table;
}

int aj_meter_add_tool_rule(AjMeter *m, AjToolRuleKind kind, const char *pattern)
{
        char ***list = kind == AJ_TOOL_RULE_DENY ? &m->deny : &m->allow;
        size_t *n = kind == AJ_TOOL_RULE_DENY ? &m->n_deny : &m->n_allow;
        if (!pattern || !*pattern)
                return -EINVAL;
        if (*n >= AJ_METER_MAX_RULES)
                return -E2BIG;
        char **l = realloc(*list, (*n + 1) * sizeof(char *));
        if (!l)
                return -ENOMEM;
        *list = l;
        l[*n] = strdup(pattern);
        if (!l[*n])
                return -ENOMEM;
        (*n)++;
        if (kind == AJ_TOOL_RULE_ALLOW)
                m->restricted = true;
        return 0;
}

void aj_meter_restrict_tools(AjMeter *m) { m->restricted = true; }

int aj_meter_new_for_profile(const AjProfile *p, const AjMeterCaps *caps, AjMeter **ret)
{
        _cleanup_(aj_meter_freep) AjMeter *m = NULL;
        int r = aj_meter_new(caps, &m);
        if (r < 0)
                return r;
        for (size_t i = 0; i < p->n_prices; i++) {
                const AjProfilePrice *pr = &p->prices[i];
                r = aj_meter_set_price(m, pr->model, pr->input, pr->output, pr->cached_input);
                if (r >= 0 && pr->web_search >= 0)
                        r = aj_meter_set_price_web_search(m, pr->model, pr->web_search);
                for (int f = 0; f < AJ_TOOL_FEES && r >= 0; f++)
                        if (pr->tool_fee[f] >= 0)
                                r = aj_meter_set_price_tool_fee(m, pr->model, f, pr->tool_fee[f]);
                if (r >= 0 && pr->max_output_tokens)
                        r = aj_meter_set_price_max_output(m, pr->model, pr->max_output_tokens);
                if (r < 0)
                        return r;
        }
        if (p->tools_allow_set)
                aj_meter_restrict_tools(m);
        for (size_t i = 0; i < p->tools_allow.n; i++)
                if ((r = aj_meter_add_tool_rule(m, AJ_TOOL_RULE_ALLOW, p->tools_allow.items[i])) < 0)
                        return r;
        for (size_t i = 0; i < p->tools_deny.n; i++)
                if ((r = aj_meter_add_tool_rule(m, AJ_TOOL_RULE_DENY, p->tools_deny.items[i])) < 0)
                        return r;
        *ret = TAKE_PTR(m);
        return 0;
}

bool aj_glob_match(const char *pat, const char *s)
{
        /* Iterative: on a mismatch, let the last '*' swallow one more character. */
        const char *star = NULL, *resume = NULL;
        while (*s) {
                if (*pat == '*') {
                        star = pat++;
                        resume = s;
                } else if (*pat == *s) {
                        pat++;
                        s++;
                } else if (star) {
                        pat = star + 1;
                        s = ++resume;
                } else
                        return false;
        }
        while (*pat == '*')
                pat++;
        return *pat == 0;
}

const AjMeterCaps *aj_meter_caps(const AjMeter *m) { return &m->caps; }

void aj_meter_caps_restore(AjMeter *m, const AjMeterCaps *caps) { m->caps = *caps; }

/* ---- the rate window ---- */

static uint64_t window_at(const AjMeter *m, size_t i) { return m->window[(m->window_head + i) % m->window_size]; }

/* Committed calls that started within the 60 s ending at now_ns. The ring is in time
 * order (window_push), so the calls that have left are found by bisection: a read (the
 * `usage` op, every reply's usage) may come a minute after 100000 calls, which only a
 * tool call prunes, and must not walk them all each time. */
static uint64_t window_count(const AjMeter *m, uint64_t now_ns)
{
        if (now_ns < AJ_RATE_WINDOW_NS)
                return m->window_len;
        /* A call exactly 60 s old has left the window. */
        uint64_t horizon = now_ns - AJ_RATE_WINDOW_NS;
        size_t lo = 0, hi = m->window_len; /* the first entry after horizon is in [lo, hi] */
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (window_at(m, mid) <= horizon)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return m->window_len - lo;
}

static void window_prune(AjMeter *m, uint64_t now_ns)
{
        uint64_t keep = window_count(m, now_ns);
        size_t drop = m->window_len - keep;
        if (drop) {
                m->window_head = (m->window_head + drop) % m->window_size;
                m->window_len -= drop;
        }
}

static void window_push(AjMeter *m, uint64_t t)
{
        /* Kept in time order for window_count(): a call committed after a later one (held
         * for approval, or another clock's caller) takes the newest start time, so it leaves
         * the window no earlier than it would have. */
        if (m->window_len > 0 && t < window_at(m, m->window_len - 1))
                t = window_at(m, m->window_len - 1);
        if (m->window_len == m->window_size) {
                if (m->window_size >= AJ_CAP_MAX_PER_MIN) {
                        /* Full with no cap this large: forget the oldest (the count saturates). */
                        m->window_head = (m->window_head + 1) % m->window_size;
                        m->window_len--;
                } else {
                        size_t size = m->window_size ? m->window_size * 2 : 64;
                        if (size > AJ_CAP_MAX_PER_MIN)
                                size = AJ_CAP_MAX_PER_MIN;
                        uint64_t *w = malloc(size * sizeof(uint64_t));
                        if (!w && m->window_size == 0)
                                return; /* not even one slot: the call goes uncounted in the window */
                        if (!w) {
                                /* Cannot grow: drop the oldest rather than fail a committed call. */
                                m->window_head = (m->window_head + 1) % m->window_size;
                                m->window_len--;
                        } else {
                                for (size_t i = 0; i < m->window_len; i++)
                                        w[i] = window_at(m, i);
                                free(m->window);
                                m->window = w;
                                m->window_size = size;
                                m->window_head = 0;
                        }
                }
        }
        m->window[(m->window_head + m->window_len) % m->window_size] = t;
        m->window_len++;
}

/* ---- checks ---- */

static void format_amount(AjCap cap, uint64_t v, char *buf, size_t size)
{
        if (cap == AJ_CAP_COST_USD)
                snprintf(buf, size, "$%.6f", pusd_to_usd(v));
        else
                snprintf(buf, size, "%llu", (unsigned long long)v);
}

static void breach(AjMeterDecision *d, AjCap cap, uint64_t limit, uint64_t value)
{
        char l[48], v[48];
        d->verdict = AJ_VERDICT_BREACH;
        d->cap = cap;
        d->limit = limit;
        d->value = value;
        format_amount(cap, limit, l, sizeof(l));
        format_amount(cap, value, v, sizeof(v));
        if (cap == AJ_CAP_REPEAT_LIMIT)
                snprintf(d->reason, sizeof(d->reason), "repeat_limit: the same call %s times in a row (limit %s)", v,
                         l);
        else if (cap == AJ_CAP_TOOL_CALLS_PER_MIN)
                snprintf(d->reason, sizeof(d->reason), "tool_calls_per_min: %s calls in 60 s (limit %s)", v, l);
        else
                snprintf(d->reason, sizeof(d->reason), "%s: would be %s (limit %s)", aj_cap_name(cap), v, l);
}

/* Checks the additive caps for `amount`; true when all fit. */
static bool check_additive(const AjMeter *m, const uint64_t amount[_AJ_CAP_MAX], const AjCap *order, size_t n,
                           AjMeterDecision *d)
{
        for (size_t i = 0; i < n; i++) {
                AjCap c = order[i];
                if (!m->caps.set[c])
                        continue;
                uint64_t v = sat_add(sat_add(m->used[c], reserved_of(m, c)), amount[c]);
                if (v > m->caps.limit[c]) {
                        breach(d, c, m->caps.limit[c], v);
                        return false;
                }
        }
        return true;
}

static void reserve_additive(AjMeter *m, AjMeterReservation *res)
{
        for (int c = 0; c < _AJ_CAP_MAX; c++)
                m->reserved[c] += res->amount[c];
        res->active = true;
}

static void repeat_key(const char *name, const char *digest, uint8_t out[AJ_SHA256_SIZE])
{
        AjSha256 h;
        aj_sha256_init(&h);
        aj_sha256_update(&h, name, strlen(name) + 1); /* the NUL separates name and digest */
        aj_sha256_update(&h, digest ? digest : "", digest ? strlen(digest) : 0);
        aj_sha256_final(&h, out);
}

int aj_meter_args_canon(const json_t *args, char **ret_canon, char ret_hex[AJ_SHA256_HEX_SIZE])
{
        json_t *null = NULL;
        if (!args)
                args = null = json_null();
        /* The canonical form: what approvals and the repeat detector compare. Most are
         * small and jansson's text is printed without its dumper (util/json-fast.h). */
        char small[2048], *canon;
        ssize_t n = aj_json_dump_fast_sorted(args, small, sizeof(small), false, 0);
        if (n >= 0 && (size_t)n < sizeof(small))
                canon = strndup(small, (size_t)n);
        else
                canon = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (null)
                json_decref(null);
        if (!canon)
                return -ENOMEM;
        uint8_t d[AJ_SHA256_SIZE];
        aj_sha256(canon, strlen(canon), d);
        aj_sha256_hex(d, ret_hex);
        if (ret_canon)
                *ret_canon = canon;
        else
                free(canon);
        return 0;
}

int aj_meter_args_digest(const json_t *args, char ret_hex[AJ_SHA256_HEX_SIZE])
{
        return aj_meter_args_canon(args, NULL, ret_hex);
}

static bool tool_denied(const AjMeter *m, const char *name, AjMeterDecision *d)
{
        for (size_t i = 0; i < m->n_deny; i++)
                if (aj_glob_match(m->deny[i], name)) {
                        d->verdict = AJ_VERDICT_DENY;
                        snprintf(d->reason, sizeof(d->reason), "tool \"%.*s\" is denied by tools.deny \"%.*s\"",
                                 REASON_NAME_MAX, name, REASON_NAME_MAX, m->deny[i]);
                        return true;
                }
        if (!m->restricted)
                return false;
        for (size_t i = 0; i < m->n_allow; i++)
                if (aj_glob_match(m->allow[i], name))
                        return false;
        d->verdict = AJ_VERDICT_DENY;
        snprintf(d->reason, sizeof(d->reason), "tool \"%.*s\" is not in tools.allow", REASON_NAME_MAX, name);
        return true;
}

void aj_meter_check_tool(const AjMeter *m, const char *name, AjMeterDecision *ret_decision)
{
        AjMeterDecision d = { .verdict = AJ_VERDICT_ALLOW };
        (void)tool_denied(m, name, &d);
        *ret_decision = d;
}

/* ---- call ids counted ---- */

static const char *counter_name(AjMeterCounter by) { return by == AJ_METER_BY_GATEWAY ? "gateway" : "broker"; }

void aj_meter_call_id_key(const char *id, uint8_t out[AJ_SHA256_SIZE]) { aj_sha256(id, strlen(id), out); }

static size_t id_bucket(const struct IdRing *r, const uint8_t key[AJ_SHA256_SIZE])
{
        uint64_t k;
        memcpy(&k, key, sizeof(k));
        return (size_t)(((k ^ r->seed) * 0x9e3779b97f4a7c15ull) >> 32) % ID_BUCKETS;
}

static int id_ring_init(struct IdRing *r)
{
        if (r->slot)
                return 0;
        r->slot = calloc(AJ_METER_MAX_CALL_IDS, sizeof(struct CallId));
        r->bucket = malloc(ID_BUCKETS * sizeof(int16_t));
        if (!r->slot || !r->bucket) {
                free(r->slot);
                free(r->bucket);
                *r = (struct IdRing){ 0 };
                return -ENOMEM;
        }
        for (size_t i = 0; i < ID_BUCKETS; i++)
                r->bucket[i] = -1;
        r->seed = aj_now_monotonic_ns() ^ (uint64_t)(uintptr_t)r;
        return 0;
}

/* The next slot holding `key` (live or claimed: a slot once used keeps its key), after
 * `from` (NULL: the first). */
static struct CallId *id_ring_next(const struct IdRing *r, const uint8_t key[AJ_SHA256_SIZE], struct CallId *from)
{
        if (!r->slot)
                return NULL;
        int16_t i = from ? from->chain : r->bucket[id_bucket(r, key)];
        for (; i >= 0; i = r->slot[i].chain)
                if (memcmp(r->slot[i].key, key, AJ_SHA256_SIZE) == 0)
                        return &r->slot[i];
        return NULL;
}

/* Over the oldest slot. Without memory it is not remembered: the call may then be counted
 * twice, never not at all. */
static struct CallId *id_ring_put(struct IdRing *r, const uint8_t key[AJ_SHA256_SIZE])
{
        if (id_ring_init(r) < 0)
                return NULL;
        int16_t me = (int16_t)r->next;
        struct CallId *e = &r->slot[me];
        if (e->used) {
                int16_t *link = &r->bucket[id_bucket(r, e->key)];
                while (*link != me)
                        link = &r->slot[*link].chain;
                *link = e->chain;
        }
        size_t b = id_bucket(r, key);
        *e = (struct CallId){ .used = true, .live = true, .chain = r->bucket[b], .gen = ++r->puts };
        memcpy(e->key, key, AJ_SHA256_SIZE);
        r->bucket[b] = me;
        r->next = (r->next + 1) % AJ_METER_MAX_CALL_IDS;
        return e;
}

/* The live id `key` that side `by` counted: its slot, or NULL. */
static struct CallId *call_id_find(AjMeter *m, const uint8_t key[AJ_SHA256_SIZE], AjMeterCounter by)
{
        struct CallId *e = NULL;
        while ((e = id_ring_next(&m->ids[by], key, e)))
                if (e->live)
                        return e;
        return NULL;
}

static void call_id_remember(AjMeter *m, const uint8_t key[AJ_SHA256_SIZE], AjMeterCounter by)
{
        (void)id_ring_put(&m->ids[by], key);
}

static void note_judged_key(AjMeter *m, const uint8_t key[AJ_SHA256_SIZE])
{
        /* On the gateway's own slot for the call, where no number of other judgments can
         * push it out; the ring below is for a call judged before the gateway counted it. */
        struct CallId *e = NULL;
        while ((e = id_ring_next(&m->ids[AJ_METER_BY_GATEWAY], key, e)))
                e->judged = true;
        (void)id_ring_put(&m->judged, key);
}

void aj_meter_note_judged(AjMeter *m, const char *call_id)
{
        if (!call_id || !*call_id)
                return;
        uint8_t key[AJ_SHA256_SIZE];
        aj_meter_call_id_key(call_id, key);
        note_judged_key(m, key);
}

bool aj_meter_gate_missed_key(const AjMeter *m, const uint8_t key[AJ_SHA256_SIZE])
{
        /* Counted by the gateway, claimed or not; judged on none of its slots. */
        const struct CallId *slot = id_ring_next(&m->ids[AJ_METER_BY_GATEWAY], key, NULL);
        if (!slot)
                return false;
        for (struct CallId *e = NULL; (e = id_ring_next(&m->ids[AJ_METER_BY_GATEWAY], key, e));)
                if (e->judged)
                        return false;
        return !id_ring_next(&m->judged, key, NULL);
}

bool aj_meter_gate_missed(const AjMeter *m, const char *call_id)
{
        if (!call_id || !*call_id || !m->ids[AJ_METER_BY_GATEWAY].slot)
                return false;
        uint8_t key[AJ_SHA256_SIZE];
        aj_meter_call_id_key(call_id, key);
        return aj_meter_gate_missed_key(m, key);
}

size_t aj_meter_call_ids(const AjMeter *m, AjMeterCounter by)
{
        size_t n = 0;
        for (size_t i = 0; m->ids[by].slot && i < AJ_METER_MAX_CALL_IDS; i++)
                n += m->ids[by].slot[i].live;
        return n;
}

int aj_meter_reserve_tool(AjMeter *m, const char *name, const char *args_digest, uint64_t now_ns,
                          AjMeterReservation *ret_res, AjMeterDecision *ret_decision)
{
        return aj_meter_reserve_tool_call(m, name, args_digest, NULL, AJ_METER_BY_BROKER, now_ns, ret_res,
                                          ret_decision);
}

static int reserve_tool_call(AjMeter *m, const char *name, const char *args_digest, const char *call_id,
                             AjMeterCounter by, bool judged, uint64_t now_ns, AjMeterReservation *ret_res,
                             AjMeterDecision *ret_decision)
{
        AjMeterDecision d = { .verdict = AJ_VERDICT_ALLOW };
        AjMeterReservation res = { .is_tool = true, .now_ns = now_ns, .by = (uint8_t)by };

        if (!name || !*name || (by != AJ_METER_BY_GATEWAY && by != AJ_METER_BY_BROKER))
                return -EINVAL;
        bool has_id = call_id && *call_id;
        if (has_id)
                aj_meter_call_id_key(call_id, res.id_key); /* once, for every use of the id */
        if (has_id && judged)
                note_judged_key(m, res.id_key); /* whatever the verdict */
        /* The tools rules decide the broker's calls, by the broker's names (claude.Bash,
         * mcp.fs.write_file). The gateway decides nothing: the model has asked for the call,
         * under its own name (Bash), and the agent may make it; "denied" there left it
         * uncounted and its id unknown, so an allow list of the agent's names (claude.*)
         * turned off every tool cap on the model's calls and the hooks' backstop. */
        if (by == AJ_METER_BY_BROKER && tool_denied(m, name, &d))
                goto done;
        if (has_id) {
                res.has_id = true;
                AjMeterCounter other = by == AJ_METER_BY_GATEWAY ? AJ_METER_BY_BROKER : AJ_METER_BY_GATEWAY;
                struct CallId *e = call_id_find(m, res.id_key, other);
                if (e) {
                        /* The same call, counted by the other side: claimed, so the id
                         * exempts no other call (a release gives it back). */
                        e->live = false;
                        res.claimed_slot = (int16_t)(e - m->ids[other].slot);
                        res.claimed_gen = e->gen;
                        res.exempt = true;
                        res.active = true;
                        d.counted_by = counter_name(other);
                        goto done;
                }
        }

        res.amount[AJ_CAP_TOOL_CALLS] = 1;
        static const AjCap order[] = { AJ_CAP_TOOL_CALLS };
        if (!check_additive(m, res.amount, order, ARRAY_SIZE(order), &d))
                goto done;

        window_prune(m, now_ns);
        if (m->caps.set[AJ_CAP_TOOL_CALLS_PER_MIN]) {
                uint64_t v = m->window_len + m->reserved_calls + 1;
                if (v > m->caps.limit[AJ_CAP_TOOL_CALLS_PER_MIN]) {
                        breach(&d, AJ_CAP_TOOL_CALLS_PER_MIN, m->caps.limit[AJ_CAP_TOOL_CALLS_PER_MIN], v);
                        goto done;
                }
        }

        repeat_key(name, args_digest, res.repeat_key);
        /* The longest streak this call could end: the committed one if it has this key, then
         * every outstanding call with this key (held calls approved one after another), then
         * this one. Counting only those with the streak's key let calls held together under
         * another key all be approved past the limit. */
        bool same = m->have_last && memcmp(res.repeat_key, m->last_key, AJ_SHA256_SIZE) == 0;
        const struct PendingKey *pk = pending_find(m, res.repeat_key);
        if (m->caps.set[AJ_CAP_REPEAT_LIMIT]) {
                uint64_t v = sat_add(sat_add(same ? m->streak : 0, pk ? pk->n : 0), 1);
                if (v > m->caps.limit[AJ_CAP_REPEAT_LIMIT]) {
                        breach(&d, AJ_CAP_REPEAT_LIMIT, m->caps.limit[AJ_CAP_REPEAT_LIMIT], v);
                        goto done;
                }
        }

        if (pending_add(m, res.repeat_key) < 0)
                return -ENOMEM;
        res.repeat_counted = true;
        reserve_additive(m, &res);
        m->reserved_calls++;
done:
        *ret_res = res;
        *ret_decision = d;
        return 0;
}

int aj_meter_reserve_tool_call(AjMeter *m, const char *name, const char *args_digest, const char *call_id,
                               AjMeterCounter by, uint64_t now_ns, AjMeterReservation *ret_res,
                               AjMeterDecision *ret_decision)
{
        return reserve_tool_call(m, name, args_digest, call_id, by, false, now_ns, ret_res, ret_decision);
}

int aj_meter_judge_tool_call(AjMeter *m, const char *name, const char *args_digest, const char *call_id,
                             uint64_t now_ns, AjMeterReservation *ret_res, AjMeterDecision *ret_decision)
{
        return reserve_tool_call(m, name, args_digest, call_id, AJ_METER_BY_BROKER, true, now_ns, ret_res,
                                 ret_decision);
}

void aj_meter_set_price_loader(AjMeter *m, int (*load)(void *userdata, AjPriceTable **ret), void *userdata)
{
        if (!m->loader)
                m->loader = calloc(1, sizeof(*m->loader));
        if (m->loader)
                *m->loader = (struct PriceLoader){ .load = load, .userdata = userdata };
}

/* The shipped table: set, or read once when first needed (its reading is not start-up's
 * cost for a run that never prices a model). A failed read leaves models unpriced. */
static const AjPriceTable *shipped_table(const AjMeter *m)
{
        struct PriceLoader *l = m->loader;
        if (m->table || !l)
                return m->table;
        if (!l->tried) {
                l->tried = true;
                if (l->load(l->userdata, &l->table) < 0)
                        l->table = NULL;
        }
        return l->table;
}

/* The profile's entry (name or base name), the table's, then the profile's "*". */
static const AjPrice *find_price(const AjMeter *m, const char *model, AjMeterDecision *d)
{
        const AjPrice *p = aj_price_table_find(m->prices, model);
        const AjPriceTable *from = m->prices, *table = p ? NULL : shipped_table(m);
        if (!p && (p = aj_price_table_find(table, model)))
                from = table;
        if (!p)
                p = aj_price_table_find(m->prices, "*");
        if (p) {
                d->price_known = true;
                d->price_source = from == table ? "table" : "profile";
                snprintf(d->price_entry, sizeof(d->price_entry), "%s", p->model);
                snprintf(d->price_date, sizeof(d->price_date), "%s", from->date ? from->date : "");
        }
        return p;
}

bool aj_meter_price_named(const AjMeter *m, const char *model)
{
        return aj_price_table_get(m->prices, model) || aj_price_table_get(shipped_table(m), model);
}

/* Fail closed: a cost cap cannot be kept for a spend whose cost is unknown. The breach, and
 * the cap as text in l for its reason. */
static void cost_unknown(const AjMeter *m, AjMeterDecision *d, char l[48])
{
        uint64_t limit = m->caps.limit[AJ_CAP_COST_USD];
        breach(d, AJ_CAP_COST_USD, limit, sat_add(m->used[AJ_CAP_COST_USD], reserved_of(m, AJ_CAP_COST_USD)));
        d->price_missing = true;
        format_amount(AJ_CAP_COST_USD, limit, l, 48);
}

/* A model whose price is unknown. */
static void price_missing(const AjMeter *m, const char *model, AjMeterDecision *d)
{
        char l[48];
        cost_unknown(m, d, l);
        snprintf(d->reason, sizeof(d->reason),
                 "cost_usd: no price for model \"%.64s\" to check against the cap %s; add it to the profile's "
                 "\"prices\" (USD per token: {\"%.64s\": {\"input\": 3e-6, \"output\": 1.5e-5}}) or a \"*\" "
                 "fallback price",
                 model, l, model);
}

/* Fee `which` of entry q (FEE_WEB_SEARCH, or an AjToolFee): true and *ret when it has one. */
#define FEE_WEB_SEARCH (-1)
static bool entry_fee(const AjPrice *q, int which, uint64_t *ret)
{
        if (!q || !(which == FEE_WEB_SEARCH ? q->web_search_priced : q->tool_fee_priced[which]))
                return false;
        *ret = which == FEE_WEB_SEARCH ? q->web_search : q->tool_fee[which];
        return true;
}

/* The fee of a web search or another tool's use for `model`: its entry `p`'s, else the
 * shipped table's entry for the model (a profile's entry that prices only its tokens),
 * then the profile's "*". */
static bool fee_for(const AjMeter *m, const char *model, const AjPrice *p, int which, uint64_t *ret)
{
        return entry_fee(p, which, ret) || entry_fee(aj_price_table_find(shipped_table(m), model), which, ret) ||
               entry_fee(aj_price_table_find(m->prices, "*"), which, ret);
}

uint64_t aj_meter_max_output(const AjMeter *m, const char *model, bool *ret_from_profile)
{
        const AjPrice *p = aj_price_table_find(m->prices, model);
        bool from_profile = p && p->max_output;
        if (!from_profile) {
                p = aj_price_table_find(shipped_table(m), model);
                if (!p || !p->max_output) {
                        p = aj_price_table_find(m->prices, "*");
                        from_profile = p && p->max_output;
                }
        }
        if (ret_from_profile)
                *ret_from_profile = from_profile;
        return p ? p->max_output : 0;
}

/* Searches at a fee nobody priced: run by the provider, or allowed by a request (its
 * reservation). */
static void web_search_price_missing(const AjMeter *m, const AjMeterUsage *u, AjMeterDecision *d)
{
        char l[48];
        cost_unknown(m, d, l);
        snprintf(d->reason, sizeof(d->reason),
                 "cost_usd: %llu web search(es) for model \"%.64s\" (run, or allowed by the request), and no "
                 "price says what one costs, to check against the cap %s; add \"web_search\" (USD per search, e.g. "
                 "0.01) to the model's entry in the profile's \"prices\" or to a \"*\" entry",
                 (unsigned long long)u->web_searches, u->model, l);
}

/* Uses of another tool the provider runs at a fee nobody priced. */
static void tool_fee_missing(const AjMeter *m, const AjMeterUsage *u, AjToolFee f, AjMeterDecision *d)
{
        char l[48];
        cost_unknown(m, d, l);
        snprintf(d->reason, sizeof(d->reason),
                 "cost_usd: %llu use(s) of the provider's %s tool for model \"%.64s\", and no price says what one "
                 "costs, to check against the cap %s; add \"%s\" (USD per use, e.g. 0.03) to the model's entry in "
                 "the profile's \"prices\" or to a \"*\" entry",
                 (unsigned long long)u->tool_uses[f], aj_tool_fee_name(f), u->model, l, aj_tool_fee_name(f));
}

static const AjCap usage_caps[] = { AJ_CAP_TOKENS, AJ_CAP_INPUT_TOKENS, AJ_CAP_OUTPUT_TOKENS, AJ_CAP_COST_USD };

static bool usage_valid(const AjMeterUsage *u)
{
        return u->model && sat_add(u->cache_read, u->cache_write) <= u->input && u->cache_write_1h <= u->cache_write;
}

/* The amounts of `u` for the additive caps; false (d a breach) when the model has
 * no price while cost_usd is capped. */
static bool usage_amounts(const AjMeter *m, const AjMeterUsage *u, uint64_t amount[_AJ_CAP_MAX], AjMeterDecision *d)
{
        const AjPrice *p = find_price(m, u->model, d);
        AjTokens t = { u->input, u->output, u->cache_read, u->cache_write, u->cache_write_1h, u->web_searches, {} };
        memcpy(t.tool_uses, u->tool_uses, sizeof(t.tool_uses));
        amount[AJ_CAP_TOKENS] = sat_add(u->input, u->output);
        amount[AJ_CAP_INPUT_TOKENS] = u->input;
        amount[AJ_CAP_OUTPUT_TOKENS] = u->output;
        if (p) {
                /* The fee is looked for only when there are searches: the shipped table is
                 * read when first needed. */
                AjPrice priced = *p;
                if (u->input_price_floor > priced.input)
                        priced.input = u->input_price_floor;
                if (u->output_price_floor > priced.output)
                        priced.output = u->output_price_floor;
                bool fee_known = !u->web_searches || fee_for(m, u->model, p, FEE_WEB_SEARCH, &priced.web_search);
                if (!u->web_searches || !fee_known)
                        priced.web_search = 0;
                int unknown = -1; /* the first other tool used at a fee nobody priced */
                for (int f = 0; f < AJ_TOOL_FEES; f++) {
                        if (u->tool_uses[f] && fee_for(m, u->model, p, f, &priced.tool_fee[f]))
                                continue;
                        priced.tool_fee[f] = 0;
                        if (u->tool_uses[f] && unknown < 0)
                                unknown = f;
                }
                d->priced_pusd = sat_add(aj_price_cost(&priced, &t), u->call_fee);
                d->cost_pusd = amount[AJ_CAP_COST_USD] = d->priced_pusd > u->provider_cost ? d->priced_pusd
                                                                                           : u->provider_cost;
                if (u->web_searches && !fee_known && m->caps.set[AJ_CAP_COST_USD]) {
                        web_search_price_missing(m, u, d);
                        return false;
                }
                if (unknown >= 0 && m->caps.set[AJ_CAP_COST_USD]) {
                        tool_fee_missing(m, u, unknown, d);
                        return false;
                }
        } else {
                /* No price: what the provider said it charged, if anything. */
                d->cost_pusd = amount[AJ_CAP_COST_USD] = u->provider_cost;
                if (m->caps.set[AJ_CAP_COST_USD]) {
                        price_missing(m, u->model, d);
                        return false;
                }
        }
        return true;
}

int aj_meter_reserve_usage(AjMeter *m, const AjMeterUsage *u, AjMeterReservation *ret_res,
                           AjMeterDecision *ret_decision)
{
        AjMeterDecision d = { .verdict = AJ_VERDICT_ALLOW };
        AjMeterReservation res = {};

        if (!usage_valid(u))
                return -EINVAL;
        if (usage_amounts(m, u, res.amount, &d) &&
            check_additive(m, res.amount, usage_caps, ARRAY_SIZE(usage_caps), &d))
                reserve_additive(m, &res);
        else
                memset(res.amount, 0, sizeof(res.amount));
        *ret_res = res;
        *ret_decision = d;
        return 0;
}

int aj_meter_settle_usage(AjMeter *m, AjMeterReservation *res, const AjMeterUsage *measured,
                          AjMeterDecision *ret_decision)
{
        AjMeterDecision d = { .verdict = AJ_VERDICT_ALLOW };
        uint64_t amount[_AJ_CAP_MAX] = {};

        if (!usage_valid(measured))
                return -EINVAL;
        aj_meter_settle(m, res, false);
        /* Spent already: committed whatever the caps say; a cap it crosses is reported. */
        if (usage_amounts(m, measured, amount, &d))
                (void)check_additive(m, amount, usage_caps, ARRAY_SIZE(usage_caps), &d);
        for (int c = 0; c < _AJ_CAP_MAX; c++)
                m->used[c] = sat_add(m->used[c], amount[c]);
        *ret_decision = d;
        return 0;
}

int aj_meter_reserve_tokens(AjMeter *m, const char *model, uint64_t input, uint64_t output, uint64_t cached,
                            AjMeterReservation *ret_res, AjMeterDecision *ret_decision)
{
        AjMeterUsage u = { .model = model, .input = input, .output = output, .cache_read = cached };
        return aj_meter_reserve_usage(m, &u, ret_res, ret_decision);
}

void aj_meter_settle(AjMeter *m, AjMeterReservation *res, bool commit)
{
        if (!res->active)
                return;
        if (res->exempt) {
                /* Counted by the other side: nothing to commit; a release gives the id back,
                 * on the slot it claimed while that still holds it: a new slot would push
                 * out the oldest of that side's ids, and an agent repeating a request that is
                 * refused at once under the model's id would empty the gateway's ring. */
                if (!commit) {
                        struct IdRing *r =
                                &m->ids[res->by == AJ_METER_BY_GATEWAY ? AJ_METER_BY_BROKER : AJ_METER_BY_GATEWAY];
                        struct CallId *e = r->slot ? &r->slot[res->claimed_slot] : NULL;
                        if (e && e->used && !e->live && e->gen == res->claimed_gen &&
                            memcmp(e->key, res->id_key, AJ_SHA256_SIZE) == 0)
                                e->live = true;
                        else
                                (void)id_ring_put(r, res->id_key);
                }
                res->active = false;
                return;
        }
        for (int c = 0; c < _AJ_CAP_MAX; c++) {
                m->reserved[c] -= res->amount[c];
                if (commit)
                        m->used[c] = sat_add(m->used[c], res->amount[c]);
        }
        if (res->is_tool) {
                m->reserved_calls--;
                if (res->repeat_counted)
                        pending_remove(m, res->repeat_key);
                if (commit) {
                        window_push(m, res->now_ns);
                        if (m->have_last && memcmp(res->repeat_key, m->last_key, AJ_SHA256_SIZE) == 0)
                                m->streak++;
                        else {
                                memcpy(m->last_key, res->repeat_key, AJ_SHA256_SIZE);
                                m->have_last = true;
                                m->streak = 1;
                        }
                        if (res->has_id)
                                call_id_remember(m, res->id_key, (AjMeterCounter)res->by);
                }
        }
        res->active = false;
}

uint64_t aj_meter_used(const AjMeter *m, AjCap cap, uint64_t now_ns)
{
        switch (cap) {
        case AJ_CAP_TOOL_CALLS_PER_MIN:
                return window_count(m, now_ns);
        case AJ_CAP_REPEAT_LIMIT:
                return m->streak;
        default:
                return cap >= 0 && cap < _AJ_CAP_MAX ? m->used[cap] : 0;
        }
}

static json_t *amount_json(AjCap cap, uint64_t v)
{
        return cap == AJ_CAP_COST_USD ? json_real(pusd_to_usd(v)) : json_integer((json_int_t)v);
}

json_t *aj_meter_to_json(const AjMeter *m, uint64_t now_ns, bool only_set)
{
        json_t *o = json_object();
        for (int c = 0; o && c < _AJ_CAP_MAX; c++) {
                if (only_set && !m->caps.set[c])
                        continue;
                uint64_t used = aj_meter_used(m, c, now_ns), limit = m->caps.limit[c];
                json_t *e = m->caps.set[c]
                                    ? json_pack("{s:o, s:o, s:o}", "limit", amount_json(c, limit), "used",
                                                amount_json(c, used), "remaining",
                                                amount_json(c, used < limit ? limit - used : 0))
                                    : json_pack("{s:n, s:o, s:n}", "limit", "used", amount_json(c, used), "remaining");
                if (!e || json_object_set_new(o, aj_meter_cap_names[c], e) < 0) {
                        json_decref(o);
                        return NULL;
                }
        }
        return o;
}

static int amount_out(AjJsonOut *o, AjCap cap, uint64_t v)
{
        if (cap == AJ_CAP_COST_USD)
                return aj_json_out_real(o, pusd_to_usd(v));
        aj_json_out_integer(o, (json_int_t)v);
        return 0;
}

int aj_meter_out_json(const AjMeter *m, uint64_t now_ns, bool only_set, AjJsonOut *o)
{
        bool first = true;
        for (int c = 0; c < _AJ_CAP_MAX; c++) {
                if (only_set && !m->caps.set[c])
                        continue;
                aj_json_out_raw(o, first ? "{" : ",", 1);
                first = false;
                const char *name = aj_meter_cap_names[c];
                if (aj_json_out_string(o, name, strlen(name)) < 0)
                        return -1;
                uint64_t used = aj_meter_used(m, c, now_ns), limit = m->caps.limit[c];
                if (!m->caps.set[c]) {
                        AJ_JSON_OUT_LITERAL(o, ":{\"limit\":null,\"used\":");
                        if (amount_out(o, c, used) < 0)
                                return -1;
                        AJ_JSON_OUT_LITERAL(o, ",\"remaining\":null}");
                        continue;
                }
                AJ_JSON_OUT_LITERAL(o, ":{\"limit\":");
                if (amount_out(o, c, limit) < 0)
                        return -1;
                AJ_JSON_OUT_LITERAL(o, ",\"used\":");
                if (amount_out(o, c, used) < 0)
                        return -1;
                AJ_JSON_OUT_LITERAL(o, ",\"remaining\":");
                if (amount_out(o, c, used < limit ? limit - used : 0) < 0)
                        return -1;
                aj_json_out_raw(o, "}", 1);
        }
        if (first)
                aj_json_out_raw(o, "{", 1);
        aj_json_out_raw(o, "}", 1);
        return 0;
}

/* ---- raising caps at run time ---- */

/* What the run has taken of an additive cap and holds reserved (-1: not additive). */
static int64_t committed_of(const AjMeter *m, int cap)
{
        if (cap == AJ_CAP_TOOL_CALLS_PER_MIN || cap == AJ_CAP_REPEAT_LIMIT)
                return -1; /* windows and streaks: they drain by themselves */
        uint64_t v = sat_add(m->used[cap], reserved_of(m, cap));
        return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* `caps`: the caps as the raises so far leave them (m's own for a single raise). */
static int compute_raise(const AjMeter *m, const AjMeterCaps *caps, const char *key, const char *value, int *ret_cap,
                         bool *ret_set, uint64_t *ret_limit, AjError *ret_error)
{
        int cap = aj_cap_from_name(key);
        if (cap < 0)
                return aj_error_set(ret_error, -EINVAL,
                                    "cannot raise \"%s\": unknown cap (expected one of: " CAP_LIST ")", key);
        if (streq(value, "unlimited")) {
                *ret_cap = cap;
                *ret_set = false;
                *ret_limit = 0;
                return 0;
        }
        bool add = value[0] == '+';
        uint64_t v;
        if (aj_meter_parse_cap_value(cap, value + add, &v) < 0)
                return aj_error_set(ret_error, -EINVAL,
                                    "%s=%s: expected %s (\"+N\" adds, \"N\" sets), or \"unlimited\"", key, value,
                                    aj_meter_cap_expected(cap));
        if (add) {
                if (!caps->set[cap])
                        return aj_error_set(ret_error, -EINVAL,
                                            "%s=%s: %s has no cap to add to; give the new value without '+'", key,
                                            value, key);
                v = sat_add(caps->limit[cap], v);
                if (v > aj_meter_cap_max(cap))
                        return aj_error_set(ret_error, -EINVAL, "%s=%s: the result is too large (expected %s)", key,
                                            value, aj_meter_cap_expected(cap));
        }
        /* A cap set below what the run has already taken and holds reserved would have it
         * over its cap the moment it ran again: its next request a breach it made before the
         * change. Refused, so that a thaw means the run goes on. */
        int64_t committed = committed_of(m, cap);
        if (committed >= 0 && v < (uint64_t)committed) {
                char have[48];
                format_amount(cap, (uint64_t)committed, have, sizeof(have));
                return aj_error_set(ret_error, -EINVAL,
                                    "%s=%s: below what the run has already used and holds reserved (%s): it would "
                                    "be over the cap as soon as it ran; give at least %s, or \"+N\"",
                                    key, value, have, have);
        }
        *ret_cap = cap;
        *ret_set = true;
        *ret_limit = v;
        return 0;
}

int aj_meter_raise(AjMeter *m, const char *key, const char *value, AjError *ret_error)
{
        int cap;
        bool set;
        uint64_t limit;
        int r = compute_raise(m, &m->caps, key, value, &cap, &set, &limit, ret_error);
        if (r < 0)
                return r;
        m->caps.set[cap] = set;
        m->caps.limit[cap] = limit;
        return 0;
}

int aj_meter_raise_json(AjMeter *m, const json_t *raise, AjError *ret_error)
{
        const char *key;
        json_t *v;
        AjMeterCaps next = m->caps;

        if (!json_is_object(raise))
                return aj_error_set(ret_error, -EINVAL, "raise: expected an object like {\"tokens\": \"+20000\"}");
        json_object_foreach ((json_t *)raise, key, v) {
                char buf[64];
                const char *value;
                if (json_is_string(v))
                        value = json_string_value(v);
                else if (json_is_integer(v) && json_integer_value(v) >= 0) {
                        snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
                        value = buf;
                } else if (json_is_real(v) && json_real_value(v) >= 0) {
                        snprintf(buf, sizeof(buf), "%.12f", json_real_value(v));
                        value = buf;
                } else
                        return aj_error_set(ret_error, -EINVAL,
                                            "raise.%s: expected a string like \"+20000\" or a number", key);
                int cap;
                bool set;
                uint64_t limit;
                /* Computed against the caps so far, so two entries for one cap compose. */
                int r = compute_raise(m, &next, key, value, &cap, &set, &limit, ret_error);
                if (r < 0)
                        return r;
                next.set[cap] = set;
                next.limit[cap] = limit;
        }
        m->caps = next;
        return 0;
}
