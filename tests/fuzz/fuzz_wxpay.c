/* fuzz_wxpay: a WeChat Pay notification body and its headers as arbitrary bytes: the checks never
 * crash or read past them, and nothing unsigned is believed. */
#include "commerce/internal.h"

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static EVP_PKEY *platform;
    if (platform == NULL) platform = EVP_RSA_gen(1024); /* only the fuzzer has the key */
    /* the first line is the signature header, the rest the body */
    const uint8_t *nl = memchr(data, '\n', size);
    size_t head = nl ? (size_t)(nl - data) : size;
    char *sig = g_strndup((const char *)data, head);
    const char *body = nl ? (const char *)nl + 1 : "";
    size_t body_len = nl ? size - head - 1 : 0;
    GError *err = NULL;
    if (cm_wxpay_verify(platform, "1796000000", "nonce", sig, body, body_len, 1796000000, &err) ==
        SL_OK)
        __builtin_trap(); /* nothing here was signed with the platform's key */
    if (err == NULL) __builtin_trap();
    g_clear_error(&err);
    json_t *note = json_loadb(body, body_len, 0, NULL);
    json_t *tx = cm_wxpay_open_resource("0123456789abcdefghijklmnopqrstuv", note, &err);
    if ((tx == NULL) == (err == NULL)) __builtin_trap();
    g_clear_error(&err);
    json_decref(tx);
    json_decref(note);
    g_free(sig);
    return 0;
}
