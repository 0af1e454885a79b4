/* Unit tests of chat/msg.c: the client message parser, chat text rules, stream ids, frames. */
#include "chat/internal.h"

#include "harness/harness.h"

#include <check.h>
#include <string.h>

START_TEST(placeholder)
{
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("chat_msg");
    TCase *tc = tcase_create("msg");
    tcase_add_test(tc, placeholder);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return harness_run_suite(suite());
}
