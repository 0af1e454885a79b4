/* customs_dev: a stand-in of the customs gateway inside the server ([customs] dev, on with
 * --demo). It checks a declaration's arithmetic and answers with the CEB312 receipt the real
 * gateway sends, so a demo's orders are declared and can be shipped. Never in production. */
#include "internal.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <string.h>

#define CEB_NS    "http://www.chinaport.gov.cn/ceb"
#define FIELD_MAX 64 /* guid 36, orderNo 34, enterprise codes 18, amounts */

/* An amount in yuan with at most two decimals ("123.45"), in fen; -1 when malformed. */
static int64_t fen_of(xmlNodePtr head, const char *name)
{
    char *t = cm_xml_child_text(head, name, FIELD_MAX);
    int64_t fen = -1;
    if (t) {
        char *dot = strchr(t, '.');
        guint64 yuan = 0, cents = 0;
        if (dot) *dot = '\0';
        gboolean ok = g_ascii_string_to_unsigned(t, 10, 0, 1000000000000ULL, &yuan, NULL);
        if (ok && dot)
            ok = strlen(dot + 1) == 2 &&
                 g_ascii_string_to_unsigned(dot + 1, 10, 0, 99, &cents, NULL);
        if (ok) fen = (int64_t)(yuan * 100 + cents);
    }
    g_free(t);
    return fen;
}

static void add(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *value)
{
    xmlNewTextChild(parent, ns, (const xmlChar *)name, (const xmlChar *)(value ? value : ""));
}

static void dev_gateway(sl_http_req *req, void *user)
{
    struct commerce *cm = user;
    if (!cm_customs_dev(cm)) {
        sl_http_reply_error(req, 404, "not_found", "no such resource");
        return;
    }
    size_t len = 0;
    const uint8_t *body = sl_http_req_body(req, &len);
    /* no network, no entities: what a gateway must refuse anyway */
    xmlDocPtr doc = len ? xmlReadMemory((const char *)body, (int)len, "ceb311.xml", NULL,
                                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING)
                        : NULL;
    xmlNodePtr root = doc && doc->intSubset == NULL ? xmlDocGetRootElement(doc) : NULL;
    xmlNodePtr head = root && strcmp((const char *)root->name, "CEB311Message") == 0
                          ? cm_xml_child(cm_xml_child(root, "Order"), "OrderHead")
                          : NULL;
    if (head == NULL) {
        if (doc) xmlFreeDoc(doc);
        sl_http_reply_error(req, 400, "bad_request", "not a CEB311Message with an OrderHead");
        return;
    }
    char *guid = cm_xml_child_text(head, "guid", FIELD_MAX),
         *order_no = cm_xml_child_text(head, "orderNo", FIELD_MAX);
    char *ebp = cm_xml_child_text(head, "ebpCode", FIELD_MAX),
         *ebc = cm_xml_child_text(head, "ebcCode", FIELD_MAX);
    int64_t goods = fen_of(head, "goodsValue"), freight = fen_of(head, "freight");
    int64_t discount = fen_of(head, "discount"), tax = fen_of(head, "taxTotal");
    int64_t paid = fen_of(head, "acturalPaid");
    xmlFreeDoc(doc);
    const char *status = "120", *info = "新增申报成功（演示网关） declared (demo gateway)";
    if (goods < 0 || freight < 0 || discount < 0 || tax < 0 || paid < 0)
        status = "100", info = "金额格式错误 an amount is malformed";
    else if (paid != goods + freight + tax - discount)
        status = "100", info =
                            "实际支付金额不符 acturalPaid is not goodsValue + freight + taxTotal - "
                            "discount";
    /* the receipt */
    xmlDocPtr out = xmlNewDoc((const xmlChar *)"1.0");
    xmlNodePtr msg = xmlNewNode(NULL, (const xmlChar *)"CEB312Message");
    xmlNsPtr ns = xmlNewNs(msg, (const xmlChar *)CEB_NS, (const xmlChar *)"ceb");
    xmlSetNs(msg, ns);
    xmlDocSetRootElement(out, msg);
    char *receipt_guid = g_uuid_string_random();
    xmlNewProp(msg, (const xmlChar *)"guid", (const xmlChar *)receipt_guid);
    xmlNewProp(msg, (const xmlChar *)"version", (const xmlChar *)"1.0");
    xmlNodePtr ret = xmlNewChild(msg, ns, (const xmlChar *)"OrderReturn", NULL);
    GTimeZone *china = g_time_zone_new_offset(8 * 3600);
    GDateTime *now = g_date_time_new_now(china);
    g_time_zone_unref(china);
    char *when = g_date_time_format(now, "%Y%m%d%H%M%S");
    add(ret, ns, "guid", guid);
    add(ret, ns, "customsCode", "2244");
    add(ret, ns, "ebpCode", ebp);
    add(ret, ns, "ebcCode", ebc);
    add(ret, ns, "orderNo", order_no);
    add(ret, ns, "returnStatus", status);
    add(ret, ns, "returnTime", when);
    add(ret, ns, "returnInfo", info);
    xmlChar *xml = NULL;
    int xml_len = 0;
    xmlDocDumpFormatMemoryEnc(out, &xml, &xml_len, "UTF-8", 1);
    sl_http_reply(req, 200, "application/xml", g_bytes_new(xml, (gsize)xml_len), NULL);
    xmlFree(xml);
    xmlFreeDoc(out);
    g_free(when);
    g_date_time_unref(now);
    g_free(receipt_guid);
    g_free(guid);
    g_free(order_no);
    g_free(ebp);
    g_free(ebc);
}

void cm_customs_dev_routes(struct commerce *cm)
{
    sl_http_route(cm->srv, "POST", "/api/v1/customs/dev/gateway", dev_gateway, cm);
}
