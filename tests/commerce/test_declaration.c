/* Unit tests of the customs order declaration (commerce/declaration.c): the CEB311Message read
 * back with libxml2's XPath, field by field, its arithmetic, its escaping and its refusals. */
#include "commerce/internal.h"
#include "harness/harness.h"

#include <check.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <string.h>

static const struct cm_declaration_line lines[] = {
    {"cl-wine-001", "佳美娜珍藏干红 2021 & <750ml>", "142", "312", 2, 6900},
    {"cl-honey-003", "乌尔莫蜂蜜 500克", "035", "312", 1, 6800},
};

static struct cm_declaration sample(void)
{
    return (struct cm_declaration){
        .guid = "4CDE1CFD-EDED-46B1-946C-B8022E42FC94",
        .order_no = "ORabc123",
        .ebp_code = "1105910159",
        .ebp_name = "丝路直播跨境电商平台",
        .ebc_code = "CL00000001",
        .ebc_name = "Viña \"Andes\" SpA",
        .app_time_ms = 1796300000000LL, /* 2026-12-03 12:13:20 UTC */
        .goods_fen = 20600,
        .freight_fen = 1000,
        .discount_fen = 500,
        .tax_fen = 1875,
        .buyer_reg_no = "alice",
        .buyer_name = "张三",
        .buyer_phone = "13800138000",
        .buyer_id_number = "11010519491231002X",
        .pay_code = "440316T004",
        .pay_name = "财付通支付科技有限公司",
        .pay_transaction_id = "4200000848202101120290526543",
        .consignee = "李四",
        .consignee_phone = "13900139000",
        .consignee_address = "上海市浦东新区世纪大道 100 号",
        .consignee_district = "310115",
        .lines = lines,
        .n_lines = G_N_ELEMENTS(lines),
    };
}

static char *xpath_text(xmlXPathContextPtr ctx, const char *expr)
{
    xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
    ck_assert_msg(o && o->nodesetval && o->nodesetval->nodeNr == 1, "%s: not one node", expr);
    xmlChar *t = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
    char *s = g_strdup((const char *)t);
    xmlFree(t);
    xmlXPathFreeObject(o);
    return s;
}

static void expect(xmlXPathContextPtr ctx, const char *expr, const char *want)
{
    char *got = xpath_text(ctx, expr);
    ck_assert_msg(strcmp(got, want) == 0, "%s: [%s], not [%s]", expr, got, want);
    g_free(got);
}

START_TEST(declaration_reads_back)
{
    struct cm_declaration d = sample();
    GError *err = NULL;
    char *xml = cm_declaration_xml(&d, &err);
    ck_assert_msg(xml != NULL, "%s", err ? err->message : "");
    ck_assert(g_str_has_prefix(xml, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "d.xml", NULL, XML_PARSE_NONET);
    ck_assert_ptr_nonnull(doc); /* well-formed, the escaped texts too */
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathRegisterNs(ctx, (const xmlChar *)"ceb",
                       (const xmlChar *)"http://www.chinaport.gov.cn/ceb");
    const char *h = "/ceb:CEB311Message/ceb:Order/ceb:OrderHead/ceb:";
    static const char *const want[][2] = {
        {"guid", "4CDE1CFD-EDED-46B1-946C-B8022E42FC94"},
        {"appType", "1"},
        {"appTime", "20261203201320"}, /* China's clock, UTC+8 */
        {"appStatus", "2"},
        {"orderType", "I"},
        {"orderNo", "ORabc123"},
        {"ebcName", "Viña \"Andes\" SpA"},
        {"goodsValue", "206.00"},
        {"freight", "10.00"},
        {"discount", "5.00"},
        {"taxTotal", "18.75"},
        {"acturalPaid", "229.75"}, /* 206 + 10 + 18.75 - 5 */
        {"currency", "142"},
        {"buyerName", "张三"},
        {"buyerIdType", "1"},
        {"buyerIdNumber", "11010519491231002X"},
        {"payTransactionId", "4200000848202101120290526543"},
        {"consigneeDitrict", "310115"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
        char *expr = g_strconcat(h, want[i][0], NULL);
        expect(ctx, expr, want[i][1]);
        g_free(expr);
    }
    expect(ctx, "/ceb:CEB311Message/@guid", "4CDE1CFD-EDED-46B1-946C-B8022E42FC94");
    const char *l2 = "/ceb:CEB311Message/ceb:Order/ceb:OrderList[2]/ceb:";
    char *e = g_strconcat("/ceb:CEB311Message/ceb:Order/ceb:OrderList[1]/ceb:itemName", NULL);
    expect(ctx, e, "佳美娜珍藏干红 2021 & <750ml>");
    g_free(e);
    e = g_strconcat("/ceb:CEB311Message/ceb:Order/ceb:OrderList[1]/ceb:totalPrice", NULL);
    expect(ctx, e, "138.00");
    g_free(e);
    e = g_strconcat(l2, "gnum", NULL);
    expect(ctx, e, "2");
    g_free(e);
    e = g_strconcat(l2, "price", NULL);
    expect(ctx, e, "68.00");
    g_free(e);
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    g_free(xml);
}
END_TEST

START_TEST(declaration_refused)
{
    GError *err = NULL;
    struct cm_declaration d = sample();
    d.goods_fen = 20601; /* lines add up to 20600 */
    ck_assert_ptr_null(cm_declaration_xml(&d, &err));
    ck_assert_ptr_nonnull(strstr(err->message, "add up"));
    g_clear_error(&err);
    d = sample();
    d.discount_fen = 20600 + 1000 + 1875 + 1; /* more than is paid */
    ck_assert_ptr_null(cm_declaration_xml(&d, &err));
    g_clear_error(&err);
    d = sample();
    d.tax_fen = -1;
    ck_assert_ptr_null(cm_declaration_xml(&d, &err));
    g_clear_error(&err);
    d = sample();
    d.consignee_address = "line one\x01";
    ck_assert_ptr_null(cm_declaration_xml(&d, &err));
    g_clear_error(&err);
    d = sample();
    d.buyer_name = "\xff\xfe";
    ck_assert_ptr_null(cm_declaration_xml(&d, &err));
    g_clear_error(&err);
    d = sample();
    d.n_lines = 0;
    ck_assert_ptr_null(cm_declaration_xml(&d, &err));
    g_clear_error(&err);
    d = sample();
    d.guid = "";
    ck_assert_ptr_null(cm_declaration_xml(&d, &err));
    g_clear_error(&err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("declaration");
    TCase *tc = tcase_create("declaration");
    tcase_add_test(tc, declaration_reads_back);
    tcase_add_test(tc, declaration_refused);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
