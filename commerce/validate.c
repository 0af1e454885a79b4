/* validate: turns request bodies into the documents commerce stores, or says precisely what is
 * wrong with them. Pure functions (no Redis, no HTTP), so they are unit-tested and fuzzed. */
#include "internal.h"

#include <string.h>

#define TEXT_MAX     500
#define URL_MAX      2048
#define QUANTITY_MAX 1000000
#define PRICE_MAX    100000000000LL /* 1e9 units of a currency in minor units: far above any item */

/* ISO 3166-1 alpha-2 officially assigned codes. */
static const char country_codes[] =
    "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR "
    "BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ "
    "EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW "
    "GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY "
    "KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV "
    "MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY "
    "QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG "
    "TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM "
    "ZW";

gboolean cm_valid_country(const char *code)
{
    if (code == NULL || strlen(code) != 2 || !g_ascii_isupper(code[0]) || !g_ascii_isupper(code[1]))
        return FALSE;
    /* codes are 3 bytes apart ("AD AE ..."); the last has no trailing space */
    for (size_t i = 0; i + 2 <= sizeof country_codes - 1; i += 3)
        if (country_codes[i] == code[0] && country_codes[i + 1] == code[1]) return TRUE;
    return FALSE;
}

static gboolean valid_currency(const char *c)
{
    return c && strlen(c) == 3 && g_ascii_isupper(c[0]) && g_ascii_isupper(c[1]) &&
           g_ascii_isupper(c[2]);
}

static gboolean valid_id_value(json_t *v)
{
    return json_is_string(v) && sl_id_valid(json_string_value(v), json_string_length(v));
}

/* Text: valid UTF-8 (jansson guarantees it), 1..TEXT_MAX characters, no control characters. */
static gboolean valid_text(json_t *v)
{
    if (!json_is_string(v)) return FALSE;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0 || memchr(s, '\0', len) || g_utf8_strlen(s, (gssize)len) > TEXT_MAX) return FALSE;
    for (const char *p = s; *p; p = g_utf8_next_char(p))
        if (g_unichar_iscntrl(g_utf8_get_char(p))) return FALSE;
    return TRUE;
}

/* {"en": "...", "zh": "...", other languages...}: at least one of en/zh, every value text. */
static json_t *localized(json_t *v)
{
    if (!json_is_object(v) || json_object_size(v) == 0 || json_object_size(v) > 16) return NULL;
    if (!json_object_get(v, "en") && !json_object_get(v, "zh")) return NULL;
    const char *lang;
    json_t *text;
    json_object_foreach(v, lang, text)
    {
        size_t n = strlen(lang);
        if (n < 2 || n > 8 || !valid_text(text)) return NULL;
        for (size_t i = 0; i < n; i++)
            if (!(g_ascii_isalpha(lang[i]) || lang[i] == '-')) return NULL;
    }
    return json_deep_copy(v);
}

static gboolean int_in(json_t *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!json_is_integer(v)) return FALSE;
    json_int_t n = json_integer_value(v);
    if (n < lo || n > hi) return FALSE;
    *out = n;
    return TRUE;
}

json_t *cm_validate_pavilion(json_t *body, GError **err)
{
    json_t *code = json_object_get(body, "code");
    if (!json_is_string(code) || !cm_valid_country(json_string_value(code))) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "code must be an ISO 3166-1 alpha-2 country code (e.g. \"CL\")");
        return NULL;
    }
    json_t *name = localized(json_object_get(body, "name"));
    if (name == NULL) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "name must be an object of texts with \"en\" and/or \"zh\"");
        return NULL;
    }
    json_t *cur = json_object_get(body, "currency");
    if (!json_is_string(cur) || !valid_currency(json_string_value(cur))) {
        json_decref(name);
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "currency must be an ISO 4217 code (e.g. \"CLP\")");
        return NULL;
    }
    json_t *langs = json_object_get(body, "languages");
    json_t *lang_copy = json_array();
    if (langs != NULL) {
        size_t i;
        json_t *l;
        gboolean ok = json_is_array(langs) && json_array_size(langs) <= 16;
        json_array_foreach(langs, i, l)
        {
            size_t n = json_is_string(l) ? json_string_length(l) : 0;
            if (!ok || n < 2 || n > 8) {
                ok = FALSE;
                break;
            }
            for (size_t k = 0; k < n; k++)
                if (!(g_ascii_isalpha(json_string_value(l)[k]) || json_string_value(l)[k] == '-'))
                    ok = FALSE;
            json_array_append(lang_copy, l);
        }
        if (!ok) {
            json_decref(name);
            json_decref(lang_copy);
            g_set_error_literal(
                err, SL_ERROR, SL_ERROR_INVALID,
                "languages must be an array of language tags (e.g. [\"es\",\"zh\"])");
            return NULL;
        }
    }
    /* The e-commerce enterprise that sells in this pavilion, as registered with customs: its
     * code (10 or 18 characters: a customs registration or a unified social credit code) and
     * name go into every declaration of its orders. */
    json_t *ebc_code = json_object_get(body, "ebc_code"),
           *ebc_name = json_object_get(body, "ebc_name");
    gboolean code_ok = ebc_code == NULL;
    if (json_is_string(ebc_code)) {
        size_t n = json_string_length(ebc_code);
        code_ok = n == 10 || n == 18;
        for (size_t i = 0; code_ok && i < n; i++)
            code_ok = g_ascii_isalnum(json_string_value(ebc_code)[i]);
    }
    if (!code_ok || (ebc_name && !valid_text(ebc_name))) {
        json_decref(name);
        json_decref(lang_copy);
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "ebc_code must be 10 or 18 letters and digits (customs registration "
                            "or unified social credit code) and ebc_name a text");
        return NULL;
    }
    json_t *doc = json_pack("{s:O, s:o, s:O, s:o}", "code", code, "name", name, "currency", cur,
                            "languages", lang_copy);
    if (ebc_code) json_object_set(doc, "ebc_code", ebc_code);
    if (ebc_name) json_object_set(doc, "ebc_name", ebc_name);
    return doc;
}

json_t *cm_validate_channel(json_t *body, GError **err)
{
    json_t *id = json_object_get(body, "id");
    if (!valid_id_value(id)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "id must match [A-Za-z0-9_-]{1,64}");
        return NULL;
    }
    json_t *title = localized(json_object_get(body, "title"));
    if (title == NULL) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "title must be an object of texts with \"en\" and/or \"zh\"");
        return NULL;
    }
    return json_pack("{s:O, s:o}", "id", id, "title", title);
}

/* A string of exactly n ASCII digits (customs' codes). */
static gboolean digits_value(json_t *v, size_t n)
{
    if (!json_is_string(v) || json_string_length(v) != n) return FALSE;
    for (size_t i = 0; i < n; i++)
        if (!g_ascii_isdigit(json_string_value(v)[i])) return FALSE;
    return TRUE;
}

static gboolean valid_url(json_t *v)
{
    if (!json_is_string(v)) return FALSE;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n > URL_MAX || memchr(s, '\0', n)) return FALSE;
    if (!g_str_has_prefix(s, "https://") && !g_str_has_prefix(s, "http://") && s[0] != '/')
        return FALSE;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '"' || s[i] == '<' || s[i] == '>') return FALSE;
    return TRUE;
}

json_t *cm_validate_product(json_t *body, GError **err)
{
    json_t *sku = json_object_get(body, "sku");
    if (!valid_id_value(sku)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "sku must match [A-Za-z0-9_-]{1,64}");
        return NULL;
    }
    json_t *price = json_object_get(body, "price");
    int64_t amount, cny;
    json_t *cur = json_object_get(price, "currency");
    if (!json_is_object(price) ||
        !int_in(json_object_get(price, "amount_minor"), 0, PRICE_MAX, &amount) ||
        !json_is_string(cur) || !valid_currency(json_string_value(cur))) {
        g_set_error_literal(
            err, SL_ERROR, SL_ERROR_INVALID,
            "price must be {\"amount_minor\": integer >= 0, \"currency\": ISO 4217 code}");
        return NULL;
    }
    if (!int_in(json_object_get(body, "price_cny_fen"), 0, PRICE_MAX, &cny)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "price_cny_fen must be an integer >= 0 (CNY in fen)");
        return NULL;
    }
    json_t *loc = json_object_get(body, "stock_location");
    const char *l = json_string_value(loc);
    if (l == NULL ||
        (strcmp(l, "bonded_sh") && strcmp(l, "overseas") && strcmp(l, "direct_mail"))) {
        g_set_error_literal(
            err, SL_ERROR, SL_ERROR_INVALID,
            "stock_location must be \"bonded_sh\", \"overseas\" or \"direct_mail\"");
        return NULL;
    }
    json_t *img = json_object_get(body, "image_url");
    if (img && !json_is_null(img) && !valid_url(img)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "image_url must be an http(s) URL or a path");
        return NULL;
    }
    json_t *title = localized(json_object_get(body, "title"));
    if (title == NULL) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "title must be an object of texts with \"en\" and/or \"zh\"");
        return NULL;
    }
    /* the import rules' per-product figures (api.md "Cross-border retail import rules") */
    int64_t vat = 1300, consumption = 0, freight = 0;
    static const struct {
        const char *name;
        int64_t hi;
        const char *what;
    } rates[] = {
        {"vat_rate_bp", 10000, "vat_rate_bp must be an integer from 0 to 10000 (basis points)"},
        {"consumption_tax_rate_bp", 9999,
         "consumption_tax_rate_bp must be an integer from 0 to 9999 (basis points)"},
        {"freight_cny_fen", PRICE_MAX, "freight_cny_fen must be an integer >= 0 (CNY in fen)"},
    };
    int64_t *outs[] = {&vat, &consumption, &freight};
    for (size_t i = 0; i < G_N_ELEMENTS(rates); i++) {
        json_t *v = json_object_get(body, rates[i].name);
        if (v && !int_in(v, 0, rates[i].hi, outs[i])) {
            json_decref(title);
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, rates[i].what);
            return NULL;
        }
    }
    /* customs' codes for the declaration's OrderList: unit (3 digits, default 011 "piece") and
     * country of origin (3 digits; absent: the pavilion's) */
    json_t *unit = json_object_get(body, "customs_unit");
    json_t *origin = json_object_get(body, "origin_country_code");
    if ((unit && !digits_value(unit, 3)) || (origin && !digits_value(origin, 3))) {
        json_decref(title);
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "customs_unit and origin_country_code must be customs' 3-digit codes");
        return NULL;
    }
    json_t *doc = json_pack("{s:O, s:o, s:{s:I, s:O}, s:I, s:s, s:I, s:I, s:I, s:s}", "sku", sku,
                            "title", title, "price", "amount_minor", (json_int_t)amount, "currency",
                            cur, "price_cny_fen", (json_int_t)cny, "stock_location", l,
                            "vat_rate_bp", (json_int_t)vat, "consumption_tax_rate_bp",
                            (json_int_t)consumption, "freight_cny_fen", (json_int_t)freight,
                            "customs_unit", unit ? json_string_value(unit) : "011");
    if (origin) json_object_set(doc, "origin_country_code", origin);
    json_object_set(doc, "image_url", img && json_is_string(img) ? img : json_null());
    return doc;
}

json_t *cm_validate_sale(json_t *body, int64_t now_ms, GError **err)
{
    json_t *channel = json_object_get(body, "channel"), *sku = json_object_get(body, "sku");
    if (!valid_id_value(channel) || !valid_id_value(sku)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID, "channel and sku must be ids");
        return NULL;
    }
    int64_t qty, limit = 1, ttl = 300, price = -1, starts = 0, ends = 0;
    if (!int_in(json_object_get(body, "quantity"), 1, QUANTITY_MAX, &qty)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "quantity must be an integer from 1 to 1000000");
        return NULL;
    }
    json_t *v;
    if ((v = json_object_get(body, "per_user_limit")) && !int_in(v, 1, qty, &limit)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "per_user_limit must be an integer from 1 to quantity");
        return NULL;
    }
    if ((v = json_object_get(body, "hold_ttl_s")) && !int_in(v, 5, 3600, &ttl)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "hold_ttl_s must be an integer from 5 to 3600");
        return NULL;
    }
    if ((v = json_object_get(body, "price_cny_fen")) && !int_in(v, 0, PRICE_MAX, &price)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "price_cny_fen must be an integer >= 0");
        return NULL;
    }
    /* times within ten years either way: a seconds value sent by mistake is caught here */
    const int64_t span = 10LL * 365 * 24 * 3600 * 1000;
    if ((v = json_object_get(body, "starts_at_ms")) && !json_is_null(v) &&
        !int_in(v, now_ms - span, now_ms + span, &starts)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "starts_at_ms must be Unix milliseconds");
        return NULL;
    }
    if ((v = json_object_get(body, "ends_at_ms")) && !json_is_null(v) &&
        (!int_in(v, now_ms - span, now_ms + span, &ends) || ends <= MAX(starts, now_ms))) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "ends_at_ms must be Unix milliseconds after starts_at_ms and now");
        return NULL;
    }
    return json_pack("{s:O, s:O, s:I, s:I, s:I, s:I, s:I, s:I}", "channel", channel, "sku", sku,
                     "quantity", (json_int_t)qty, "per_user_limit", (json_int_t)limit, "hold_ttl_s",
                     (json_int_t)ttl, "price_cny_fen", (json_int_t)price, "starts_at_ms",
                     (json_int_t)starts, "ends_at_ms", (json_int_t)ends);
}

/* ---- the checkout form (a payment's buyer and consignee) ---- */

#define NAME_MAX_CHARS    50
#define ADDRESS_MAX_CHARS 200

static gboolean phone_ok(json_t *v)
{
    const char *s = json_string_value(v);
    size_t n = s ? strlen(s) : 0, digits = 0;
    if (n < 5 || n > 20) return FALSE;
    for (size_t i = 0; i < n; i++) {
        if (g_ascii_isdigit(s[i]))
            digits++;
        else if (!(i == 0 && s[i] == '+') && s[i] != '-' && s[i] != ' ')
            return FALSE;
    }
    return digits >= 5;
}

gboolean cm_valid_text(json_t *v, size_t max)
{
    return valid_text(v) && g_utf8_strlen(json_string_value(v), -1) <= (glong)max;
}

json_t *cm_validate_checkout(json_t *body, int today_year, char **id_number, GError **err)
{
    *id_number = NULL;
    json_t *buyer = json_object_get(body, "buyer"), *cons = json_object_get(body, "consignee");
    const char *bad = NULL, *why = NULL;
    json_t *id_type = json_object_get(buyer, "id_type");
    if (!json_is_object(buyer))
        bad = "buyer", why = "an object {name, id_type, id_number, phone}";
    else if (!cm_valid_text(json_object_get(buyer, "name"), NAME_MAX_CHARS))
        bad = "buyer.name", why = "the buyer's real name, 1 to 50 characters";
    else if (id_type && g_strcmp0(json_string_value(id_type), "resident_id") != 0)
        bad = "buyer.id_type", why = "\"resident_id\" (a PRC resident identity card)";
    else if (!phone_ok(json_object_get(buyer, "phone")))
        bad = "buyer.phone", why = "a phone number of 5 to 20 digits";
    else if (!json_is_object(cons))
        bad = "consignee", why = "an object {name, phone, address, district}";
    else if (!cm_valid_text(json_object_get(cons, "name"), NAME_MAX_CHARS))
        bad = "consignee.name", why = "1 to 50 characters";
    else if (!phone_ok(json_object_get(cons, "phone")))
        bad = "consignee.phone", why = "a phone number of 5 to 20 digits";
    else if (!cm_valid_text(json_object_get(cons, "address"), ADDRESS_MAX_CHARS))
        bad = "consignee.address", why = "1 to 200 characters";
    else if (!digits_value(json_object_get(cons, "district"), 6))
        bad = "consignee.district", why = "the 6-digit administrative division code";
    if (bad) {
        g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "%s must be %s", bad, why);
        return NULL;
    }
    json_t *id = json_object_get(buyer, "id_number");
    if (id && !json_is_null(id)) {
        GError *e = NULL;
        *id_number =
            json_is_string(id) ? cm_id_number_check(json_string_value(id), today_year, &e) : NULL;
        if (*id_number == NULL) {
            /* the number itself is never repeated in the message */
            g_set_error(err, SL_ERROR, SL_ERROR_INVALID, "buyer.id_number: %s",
                        e ? e->message : "must be a string");
            g_clear_error(&e);
            return NULL;
        }
    }
    return json_pack("{s:{s:O, s:O}, s:{s:O, s:O, s:O, s:O}}", "buyer", "name",
                     json_object_get(buyer, "name"), "phone", json_object_get(buyer, "phone"),
                     "consignee", "name", json_object_get(cons, "name"), "phone",
                     json_object_get(cons, "phone"), "address", json_object_get(cons, "address"),
                     "district", json_object_get(cons, "district"));
}
