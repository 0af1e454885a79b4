/* fuzz_commerce_body: every commerce body validator on arbitrary JSON; whatever they accept must
 * be a well-formed document (ids valid, counts in range). */
#include "commerce/internal.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_id(json_t *doc, const char *field)
{
    json_t *v = json_object_get(doc, field);
    if (!json_is_string(v) || !sl_id_valid(json_string_value(v), json_string_length(v)))
        __builtin_trap();
}

/* A validator answers a document or an error, never both and never neither. */
static json_t *answered(json_t *d, GError **err)
{
    if ((d == NULL) == (*err == NULL)) __builtin_trap();
    g_clear_error(err);
    return d;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (body == NULL) return 0;
    GError *err = NULL;
    json_t *d;
    if ((d = answered(cm_validate_pavilion(body, &err), &err))) {
        if (!cm_valid_country(json_string_value(json_object_get(d, "code")))) __builtin_trap();
        json_decref(d);
    }
    if ((d = answered(cm_validate_channel(body, &err), &err))) {
        check_id(d, "id");
        json_decref(d);
    }
    if ((d = answered(cm_validate_product(body, &err), &err))) {
        check_id(d, "sku");
        if (json_integer_value(json_object_get(d, "price_cny_fen")) < 0) __builtin_trap();
        json_decref(d);
    }
    if ((d = answered(cm_validate_sale(body, 1800000000000LL, &err), &err))) {
        check_id(d, "channel");
        check_id(d, "sku");
        json_int_t q = json_integer_value(json_object_get(d, "quantity"));
        json_int_t l = json_integer_value(json_object_get(d, "per_user_limit"));
        if (q < 1 || l < 1 || l > q) __builtin_trap();
        json_decref(d);
    }
    char *id = NULL;
    if ((d = answered(cm_validate_checkout(body, 2026, &id, &err), &err))) {
        /* an identity number that passed is 18 characters, digits and a last X at most */
        if (id && (strlen(id) != 18 || strspn(id, "0123456789") < 17)) __builtin_trap();
        if (!json_is_string(json_object_get(json_object_get(d, "consignee"), "district")))
            __builtin_trap();
        json_decref(d);
    } else if (id) {
        __builtin_trap(); /* refused, but a number was handed out */
    }
    g_free(id);
    json_decref(body);
    return 0;
}
