/* Unit tests of the cross-border retail import rules (commerce/crossborder.c): GB 11643 identity
 * numbers, their sealing, masking and quota reference, and the import tax of api.md. */
#include "commerce/internal.h"
#include "harness/harness.h"

#include <check.h>
#include <math.h>
#include <string.h>

#define TODAY_YEAR 2026
#define KEY_A      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define KEY_B      "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"

START_TEST(identity_numbers_valid)
{
    static const char *const good[] = {"11010519491231002X", "440524198001010013",
                                       "11010120000229123X", "310115199003076419"};
    for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
        GError *err = NULL;
        char *c = cm_id_number_check(good[i], TODAY_YEAR, &err);
        ck_assert_msg(c != NULL, "%s: %s", good[i], err ? err->message : "");
        ck_assert_str_eq(c, good[i]);
        g_free(c);
    }
    GError *err = NULL;
    char *c = cm_id_number_check("11010519491231002x", TODAY_YEAR, &err); /* a lower-case x */
    ck_assert_str_eq(c, "11010519491231002X");
    g_free(c);
}
END_TEST

/* Each is refused with a message that names what is wrong. */
static const struct {
    const char *id, *needle;
} bad_ids[] = {
    {"110105194912310021", "check character"}, /* one digit of the check */
    {"11010519491231002Y", "17 digits"},       /* a check that is no digit or X */
    {"110105194902300012", "birth date"},      /* 30 February, with a right check */
    {"110105209901010012", "birth date"},      /* born in 2099 */
    {"110105189912310023", "birth date"},      /* born before 1900 */
    {"010105194912310026", "17 digits"},       /* a region starting with 0 */
    {"11010519491231002", "18 characters"},    /* 17 */
    {"11010519491231002X1", "18 characters"},  /* 19 */
    {"1101051949123100 X", "17 digits"},       /* a space */
    {"", "18 characters"},
    {"１１０１０５１９４９", "18 characters"}, /* full-width digits: 30 bytes */
};

START_TEST(identity_numbers_refused)
{
    GError *err = NULL;
    ck_assert_ptr_null(cm_id_number_check(bad_ids[_i].id, TODAY_YEAR, &err));
    ck_assert_ptr_nonnull(err);
    ck_assert_int_eq(err->code, SL_ERROR_INVALID);
    ck_assert_msg(strstr(err->message, bad_ids[_i].needle), "%s: %s", bad_ids[_i].id, err->message);
    ck_assert_msg(strstr(err->message, bad_ids[_i].id) == NULL || !*bad_ids[_i].id,
                  "the message repeats the number: %s", err->message);
    g_error_free(err);
}
END_TEST

START_TEST(identity_numbers_masked)
{
    char out[CM_ID_MASKED_LEN + 1];
    cm_id_number_mask("11010519491231002X", out);
    ck_assert_str_eq(out, "110***********002X");
    cm_id_number_mask("short", out);
    ck_assert_str_eq(out, "******************");
}
END_TEST

START_TEST(identity_numbers_sealed)
{
    struct cm_identity_key a, b;
    GError *err = NULL;
    ck_assert_int_eq(cm_identity_key_init(&a, KEY_A, &err), SL_OK);
    ck_assert_int_eq(cm_identity_key_init(&b, KEY_B, &err), SL_OK);
    const char *id = "11010519491231002X";
    char *s1 = cm_id_number_seal(&a, id, &err), *s2 = cm_id_number_seal(&a, id, &err);
    ck_assert(s1 && s2 && g_str_has_prefix(s1, "v1."));
    ck_assert_str_ne(s1, s2); /* a fresh nonce each time */
    ck_assert_ptr_null(strstr(s1, "1949"));
    char *o = cm_id_number_open(&a, s1, &err);
    ck_assert_str_eq(o, id);
    g_free(o);
    /* another key, a changed byte, garbage: refused, never a wrong number */
    ck_assert_ptr_null(cm_id_number_open(&b, s1, &err));
    g_clear_error(&err);
    char *tampered = g_strdup(s1);
    tampered[10] = tampered[10] == 'A' ? 'B' : 'A';
    ck_assert_ptr_null(cm_id_number_open(&a, tampered, &err));
    g_clear_error(&err);
    static const char *const junk[] = {"", "v1.", "v1.!!!!", "v2.AAAA",
                                       "v1.AAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < G_N_ELEMENTS(junk); i++) {
        ck_assert_ptr_null(cm_id_number_open(&a, junk[i], &err));
        ck_assert_ptr_nonnull(err);
        g_clear_error(&err);
    }
    ck_assert_ptr_null(cm_id_number_open(&a, NULL, &err));
    g_clear_error(&err);
    g_free(tampered);
    g_free(s1);
    g_free(s2);
    /* the reference: one per person and key, never the number, unlike for another number */
    char *r1 = cm_id_number_ref(&a, id), *r2 = cm_id_number_ref(&a, id);
    char *r3 = cm_id_number_ref(&a, "440524198001010013"), *r4 = cm_id_number_ref(&b, id);
    ck_assert_str_eq(r1, r2);
    ck_assert_int_eq(strlen(r1), 64);
    ck_assert_str_ne(r1, r3);
    ck_assert_str_ne(r1, r4);
    g_free(r1);
    g_free(r2);
    g_free(r3);
    g_free(r4);
    /* keys are 64 hex digits */
    struct cm_identity_key k;
    ck_assert_int_eq(cm_identity_key_init(&k, "abc", &err), SL_ERR);
    g_clear_error(&err);
    ck_assert_int_eq(cm_identity_key_init(&k, NULL, &err), SL_ERR);
    g_clear_error(&err);
    char nothex[65];
    memset(nothex, 'g', 64);
    nothex[64] = '\0';
    ck_assert_int_eq(cm_identity_key_init(&k, nothex, &err), SL_ERR);
    g_clear_error(&err);
}
END_TEST

START_TEST(import_tax)
{
    ck_assert_int_eq(cm_import_tax_fen(10000, 1300, 0), 910);     /* 100 CNY, VAT 13 % */
    ck_assert_int_eq(cm_import_tax_fen(10000, 1300, 1500), 2306); /* cosmetics: 2305.88 */
    ck_assert_int_eq(cm_import_tax_fen(0, 1300, 1500), 0);
    ck_assert_int_eq(cm_import_tax_fen(500, 1300, 0), 46);   /* 45.5: half up */
    ck_assert_int_eq(cm_import_tax_fen(1500, 1300, 0), 137); /* 136.5 */
    ck_assert_int_eq(cm_import_tax_fen(-1, 1300, 0), -1);
    ck_assert_int_eq(cm_import_tax_fen(CM_TAX_GOODS_MAX + 1, 1300, 0), -1);
    ck_assert_int_eq(cm_import_tax_fen(100, -1, 0), -1);
    ck_assert_int_eq(cm_import_tax_fen(100, 1300, 10000), -1);
    ck_assert_int_gt(cm_import_tax_fen(CM_TAX_GOODS_MAX, 10000, 9999), 0); /* no overflow */
    /* against the formula of api.md in floating point: never more than half a fen away */
    for (int64_t g = 0; g < 200000; g += 7) {
        for (int c = 0; c <= 3000; c += 500) {
            double ct = (double)g * c / 10000 / (1 - c / 10000.0);
            double vat = ((double)g + ct) * 0.13;
            double want = 0.7 * (ct + vat);
            int64_t got = cm_import_tax_fen(g, 1300, c);
            ck_assert_msg(fabs((double)got - want) <= 0.5 + 1e-6, "g=%lld c=%d: %lld vs %f",
                          (long long)g, c, (long long)got, want);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("crossborder");
    TCase *tc = tcase_create("crossborder");
    tcase_add_test(tc, identity_numbers_valid);
    tcase_add_loop_test(tc, identity_numbers_refused, 0, G_N_ELEMENTS(bad_ids));
    tcase_add_test(tc, identity_numbers_masked);
    tcase_add_test(tc, identity_numbers_sealed);
    tcase_add_test(tc, import_tax);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
