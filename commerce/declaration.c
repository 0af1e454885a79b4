/* declaration: the China customs cross-border e-commerce order declaration (CEB311Message) of a
 * paid order, written with libxml2 so every text is escaped; pure, no I/O. Money is in yuan with
 * two decimals and acturalPaid = goodsValue + freight + taxTotal − discount, as customs checks. */
#include "internal.h"

#include <libxml/tree.h>
#include <libxml/xmlsave.h>
#include <string.h>
#include <time.h>

#define CEB_NS "http://www.chinaport.gov.cn/ceb"

static void yuan(int64_t fen, char out[32])
{
    g_snprintf(out, 32, "%s%" G_GINT64_FORMAT ".%02d", fen < 0 ? "-" : "", ABS(fen) / 100,
               (int)(ABS(fen) % 100));
}

static void add_text(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *value)
{
    xmlNewTextChild(parent, ns, (const xmlChar *)name, (const xmlChar *)(value ? value : ""));
}

static void add_money(xmlNodePtr parent, xmlNsPtr ns, const char *name, int64_t fen)
{
    char text[32];
    yuan(fen, text);
    add_text(parent, ns, name, text);
}

static void add_int(xmlNodePtr parent, xmlNsPtr ns, const char *name, int64_t v)
{
    char text[24];
    g_snprintf(text, sizeof text, "%" G_GINT64_FORMAT, v);
    add_text(parent, ns, name, text);
}

/* appTime: yyyyMMddHHmmss on China's clock (UTC+8, no daylight saving). */
static void china_time(int64_t ms, char out[16])
{
    time_t t = (time_t)(ms / 1000) + 8 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

/* XML 1.0 has no place for control characters: a text with one is refused, not escaped. */
static gboolean text_ok(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return FALSE;
    return TRUE;
}

static gboolean texts_ok(const struct cm_declaration *d)
{
    const char *head[] = {d->guid,
                          d->order_no,
                          d->ebp_code,
                          d->ebp_name,
                          d->ebc_code,
                          d->ebc_name,
                          d->buyer_reg_no,
                          d->buyer_name,
                          d->buyer_phone,
                          d->buyer_id_number,
                          d->pay_code,
                          d->pay_name,
                          d->pay_transaction_id,
                          d->consignee,
                          d->consignee_phone,
                          d->consignee_address,
                          d->consignee_district};
    for (size_t i = 0; i < G_N_ELEMENTS(head); i++)
        if (!text_ok(head[i]) || (head[i] && !g_utf8_validate(head[i], -1, NULL))) return FALSE;
    for (size_t i = 0; i < d->n_lines; i++) {
        const struct cm_declaration_line *l = &d->lines[i];
        const char *line[] = {l->item_no, l->item_name, l->unit, l->country};
        for (size_t j = 0; j < G_N_ELEMENTS(line); j++)
            if (!text_ok(line[j]) || (line[j] && !g_utf8_validate(line[j], -1, NULL))) return FALSE;
    }
    return TRUE;
}

static gboolean check(const struct cm_declaration *d, GError **err)
{
    if (d->guid == NULL || !*d->guid || !texts_ok(d)) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "the declaration needs a guid, and its texts must be UTF-8 without "
                            "control characters");
        return FALSE;
    }
    int64_t lines = 0;
    for (size_t i = 0; i < d->n_lines; i++) {
        const struct cm_declaration_line *l = &d->lines[i];
        if (l->qty < 1 || l->price_fen < 0 || l->price_fen > CM_TAX_GOODS_MAX / l->qty) {
            g_set_error(err, SL_ERROR, SL_ERROR_INVALID,
                        "declaration line %zu: a quantity of 1 or more at a price of 0 or more",
                        i + 1);
            return FALSE;
        }
        lines += l->price_fen * l->qty;
    }
    if (d->n_lines == 0 || lines != d->goods_fen) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "the declaration's lines must add up to its goods value");
        return FALSE;
    }
    if (d->freight_fen < 0 || d->tax_fen < 0 || d->discount_fen < 0 ||
        d->discount_fen > d->goods_fen + d->freight_fen + d->tax_fen) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "freight, tax and discount must be 0 or more, and the discount at "
                            "most what is paid");
        return FALSE;
    }
    return TRUE;
}

char *cm_declaration_xml(const struct cm_declaration *d, GError **err)
{
    if (!check(d, err)) return NULL;
    xmlDocPtr doc = xmlNewDoc((const xmlChar *)"1.0");
    xmlNodePtr root = xmlNewNode(NULL, (const xmlChar *)"CEB311Message");
    xmlNsPtr ns = xmlNewNs(root, (const xmlChar *)CEB_NS, (const xmlChar *)"ceb");
    xmlSetNs(root, ns);
    xmlNewNs(root, (const xmlChar *)"http://www.w3.org/2001/XMLSchema-instance",
             (const xmlChar *)"xsi");
    xmlNewProp(root, (const xmlChar *)"guid", (const xmlChar *)d->guid);
    xmlNewProp(root, (const xmlChar *)"version", (const xmlChar *)"1.0");
    xmlDocSetRootElement(doc, root);

    xmlNodePtr order = xmlNewChild(root, ns, (const xmlChar *)"Order", NULL);
    xmlNodePtr head = xmlNewChild(order, ns, (const xmlChar *)"OrderHead", NULL);
    char at[16];
    china_time(d->app_time_ms, at);
    add_text(head, ns, "guid", d->guid);
    add_text(head, ns, "appType", "1"); /* a new declaration */
    add_text(head, ns, "appTime", at);
    add_text(head, ns, "appStatus", "2"); /* submitted */
    add_text(head, ns, "orderType", "I"); /* an import */
    add_text(head, ns, "orderNo", d->order_no);
    add_text(head, ns, "ebpCode", d->ebp_code);
    add_text(head, ns, "ebpName", d->ebp_name);
    add_text(head, ns, "ebcCode", d->ebc_code);
    add_text(head, ns, "ebcName", d->ebc_name);
    add_money(head, ns, "goodsValue", d->goods_fen);
    add_money(head, ns, "freight", d->freight_fen);
    add_money(head, ns, "discount", d->discount_fen);
    add_money(head, ns, "taxTotal", d->tax_fen);
    add_money(head, ns, "acturalPaid",
              d->goods_fen + d->freight_fen + d->tax_fen - d->discount_fen);
    add_text(head, ns, "currency", "142"); /* CNY in customs' currency table */
    add_text(head, ns, "buyerRegNo", d->buyer_reg_no);
    add_text(head, ns, "buyerName", d->buyer_name);
    add_text(head, ns, "buyerTelephone", d->buyer_phone);
    add_text(head, ns, "buyerIdType", "1"); /* a resident identity card */
    add_text(head, ns, "buyerIdNumber", d->buyer_id_number);
    add_text(head, ns, "payCode", d->pay_code);
    add_text(head, ns, "payName", d->pay_name);
    add_text(head, ns, "payTransactionId", d->pay_transaction_id);
    add_text(head, ns, "consignee", d->consignee);
    add_text(head, ns, "consigneeTelephone", d->consignee_phone);
    add_text(head, ns, "consigneeAddress", d->consignee_address);
    add_text(head, ns, "consigneeDitrict", d->consignee_district); /* customs' spelling */
    for (size_t i = 0; i < d->n_lines; i++) {
        const struct cm_declaration_line *l = &d->lines[i];
        xmlNodePtr row = xmlNewChild(order, ns, (const xmlChar *)"OrderList", NULL);
        add_int(row, ns, "gnum", (int64_t)i + 1);
        add_text(row, ns, "itemNo", l->item_no);
        add_text(row, ns, "itemName", l->item_name);
        add_text(row, ns, "unit", l->unit);
        add_int(row, ns, "qty", l->qty);
        add_money(row, ns, "price", l->price_fen);
        add_money(row, ns, "totalPrice", l->price_fen * l->qty);
        add_text(row, ns, "currency", "142");
        add_text(row, ns, "country", l->country);
    }

    xmlChar *text = NULL;
    int len = 0;
    xmlDocDumpFormatMemoryEnc(doc, &text, &len, "UTF-8", 1);
    xmlFreeDoc(doc);
    char *out = text ? g_strndup((const char *)text, (gsize)len) : NULL;
    xmlFree(text);
    if (out == NULL)
        g_set_error_literal(err, SL_ERROR, SL_ERROR_IO, "cannot write the declaration's XML");
    return out;
}
