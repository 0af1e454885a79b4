/* moderation: the HTTP side of chat: POST /api/v1/channels/{id}/moderation (mute, unmute,
 * ban, unban, delete) for the channel's host/consul, and each pavilion's banned-word list. */
#include "internal.h"

#include <hiredis/hiredis.h>
#include <string.h>

#define MODERATION_MAX_S (366 * 24 * 3600)

struct mod_req {
    sl_http_req *req; /* owned reference */
    struct chat *chat;
    struct sl_claims who;
    char *id;    /* owned: channel or pavilion code */
    json_t *doc; /* owned: the validated request */
};

static void mod_req_free(struct mod_req *m)
{
    sl_http_req_unref(m->req);
    g_free(m->id);
    json_decref(m->doc);
    g_free(m);
}

static void mod_reply(struct mod_req *m, int status, json_t *body)
{
    sl_http_reply_json(m->req, status, body);
    mod_req_free(m);
}

static void mod_error(struct mod_req *m, int status, const char *code, const char *message)
{
    sl_http_reply_error(m->req, status, code, "%s", message);
    mod_req_free(m);
}

/* Auth, a valid path id and (for writes) a JSON body; answers and returns NULL otherwise. */
static struct mod_req *mod_begin(sl_http_req *req, struct chat *chat, const char *param,
                                 gboolean body, json_t **json)
{
    const struct sl_claims *who = sl_http_req_auth(req);
    if (who == NULL) return NULL;
    const char *id = sl_http_req_param(req, param);
    if (id == NULL || !sl_id_valid(id, strlen(id))) {
        sl_http_reply_error(req, 400, "bad_request", "%s must match [A-Za-z0-9_-]{1,64}", param);
        return NULL;
    }
    if (body && (*json = sl_http_req_json(req)) == NULL) return NULL;
    struct mod_req *m = g_new0(struct mod_req, 1);
    m->req = sl_http_req_ref(req);
    m->chat = chat;
    m->who = *who;
    m->id = g_strdup(id);
    return m;
}

/* Host or consul of pavilion pav (min_role and up), or admin. */
static gboolean mod_may(const struct mod_req *m, enum sl_role min_role, const char *pav)
{
    if (m->who.role == SL_ROLE_ADMIN) return TRUE;
    return m->who.role >= min_role && pav && strcmp(m->who.pav, pav) == 0;
}

/* ---- POST /api/v1/channels/{id}/moderation ---- */

json_t *chat_moderation_validate(json_t *body, GError **err)
{
    const char *action = json_string_value(json_object_get(body, "action"));
    static const char *const actions[] = {"mute", "unmute", "ban", "unban", "delete", NULL};
    gboolean known = FALSE;
    for (int i = 0; action && actions[i]; i++)
        known = known || strcmp(action, actions[i]) == 0;
    if (!known) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "action must be mute, unmute, ban, unban or delete");
        return NULL;
    }
    json_t *out = json_pack("{s:s}", "action", action);
    if (strcmp(action, "delete") == 0) {
        json_t *mid = json_object_get(body, "message_id");
        struct chat_stream_id id;
        if (!json_is_string(mid) ||
            chat_stream_id_parse(json_string_value(mid), json_string_length(mid), &id) != SL_OK) {
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                                "delete needs the message_id of a chat message");
            json_decref(out);
            return NULL;
        }
        json_object_set(out, "message_id", mid);
        json_object_set_new(out, "duration_ms", json_integer(0));
        return out;
    }
    json_t *user = json_object_get(body, "user");
    if (!json_is_string(user) || !sl_id_valid(json_string_value(user), json_string_length(user))) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "user must be the user id (sub) of a token");
        json_decref(out);
        return NULL;
    }
    json_object_set(out, "user", user);
    json_t *d = json_object_get(body, "duration_s");
    json_int_t dur = strcmp(action, "mute") == 0 ? 600 : 0; /* a ban without duration is for good */
    if (d && !json_is_null(d)) {
        if (!json_is_integer(d) || json_integer_value(d) < 1 ||
            json_integer_value(d) > MODERATION_MAX_S) {
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                                "duration_s must be an integer from 1 to 31622400");
            json_decref(out);
            return NULL;
        }
        dur = json_integer_value(d);
    }
    json_object_set_new(out, "duration_ms", json_integer(dur * 1000));
    return out;
}

static void moderation_done(struct redisReply *reply, const char *err, void *user)
{
    struct mod_req *m = user;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
        mod_error(m, 503, "unavailable", "the store is unavailable; nothing was changed");
        return;
    }
    if (strcmp(reply->element[0]->str, "not_found") == 0) {
        mod_error(m, 404, "not_found", "no such chat message in this channel's history");
        return;
    }
    json_t *out = json_deep_copy(m->doc);
    json_object_set_new(out, "channel", json_string(m->id));
    if (reply->elements > 1) json_object_set_new(out, "id", json_string(reply->element[1]->str));
    mod_reply(m, 200, out);
}

static void moderation_channel_loaded(struct redisReply *reply, const char *err, void *user)
{
    struct mod_req *m = user;
    char pav[3];
    int rc = chat_channel_pavilion(reply, pav);
    if (rc != SL_OK) {
        if (rc == SL_EPROTO)
            mod_error(m, 404, "not_found", "no such channel");
        else
            mod_error(m, 503, "unavailable", "the store is unavailable; nothing was changed");
        return;
    }
    if (!mod_may(m, SL_ROLE_HOST, pav)) {
        mod_error(m, 403, "forbidden", "moderation needs the host or consul of this pavilion");
        return;
    }
    const char *ch = m->id;
    const char *action = json_string_value(json_object_get(m->doc, "action"));
    const char *target = json_string_value(json_object_get(m->doc, "user"));
    const char *mid = json_string_value(json_object_get(m->doc, "message_id"));
    char *history = g_strdup_printf(SL_KEY_ROOM_HISTORY, ch);
    char *mute = g_strdup_printf(SL_KEY_ROOM_MUTE, ch, target ? target : "");
    char *ban = g_strdup_printf(SL_KEY_ROOM_BAN, ch, target ? target : "");
    char *deleted = g_strdup_printf(SL_KEY_ROOM_DELETED, ch);
    char *pub = g_strdup_printf(SL_ROOM_CHANNEL, ch);
    char dur[24], maxlen[16];
    g_snprintf(dur, sizeof dur, "%lld",
               (long long)json_integer_value(json_object_get(m->doc, "duration_ms")));
    g_snprintf(maxlen, sizeof maxlen, "%d", SL_ROOM_HISTORY_MAX);
    char *event = NULL;
    if (mid) {
        json_t *ev = json_pack(
            "{s:s, s:I, s:s, s:s, s:s}", "type", sl_room_event_name(SL_ROOM_EV_MODERATION), "ts_ms",
            (json_int_t)sl_now_ms(), "action", "delete", "message_id", mid, "by", m->who.sub);
        event = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
    }
    const char *argv[] = {history,
                          mute,
                          ban,
                          deleted,
                          action,
                          pub,
                          target ? target : "",
                          dur,
                          mid ? mid : "",
                          event ? event : "",
                          maxlen};
    if (sl_redis_eval(sl_server_redis(m->chat->srv), m->chat->moderate, moderation_done, m, 4, 11,
                      argv, NULL) != SL_OK)
        mod_error(m, 503, "unavailable", "the store is unavailable; nothing was changed");
    else
        g_message("moderation: %s %s in %s by %s", action, target ? target : mid, ch, m->who.sub);
    free(event);
    g_free(history);
    g_free(mute);
    g_free(ban);
    g_free(deleted);
    g_free(pub);
}

static void moderation_post(sl_http_req *req, void *user)
{
    json_t *body = NULL;
    struct mod_req *m = mod_begin(req, user, "id", TRUE, &body);
    if (m == NULL) return;
    GError *err = NULL;
    m->doc = chat_moderation_validate(body, &err);
    json_decref(body);
    if (m->doc == NULL) {
        mod_error(m, 400, "bad_request", err->message);
        g_error_free(err);
        return;
    }
    if (m->who.role < SL_ROLE_HOST) { /* no need to read the channel to refuse a viewer */
        mod_error(m, 403, "forbidden", "moderation needs the host or consul of this pavilion");
        return;
    }
    if (sl_redis_command(sl_server_redis(m->chat->srv), moderation_channel_loaded, m,
                         "GET " SL_KEY_CHANNEL, m->id) != SL_OK)
        mod_error(m, 503, "unavailable", "the store is unavailable; nothing was changed");
}

/* ---- banned words: PUT/GET /api/v1/pavilions/{code}/banned-words (consul, admin) ---- */

json_t *chat_words_validate(json_t *body, GError **err)
{
    json_t *words = json_object_get(body, "words");
    if (!json_is_array(words) || json_array_size(words) > CHAT_WORDS_MAX) {
        g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                            "words must be an array of at most 500 strings");
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *w;
    json_array_foreach(words, i, w)
    {
        char *clean = json_is_string(w) ? chat_text_clean(json_string_value(w),
                                                          json_string_length(w), CHAT_WORD_CHARS)
                                        : NULL;
        if (clean == NULL) {
            g_set_error_literal(err, SL_ERROR, SL_ERROR_INVALID,
                                "each word must be 1 to 64 characters of text");
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, json_string(clean));
        g_free(clean);
    }
    return out;
}

static void words_stored(struct redisReply *reply, const char *err, void *user)
{
    struct mod_req *m = user;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        mod_error(m, 503, "unavailable", "the store is unavailable; nothing was changed");
        return;
    }
    /* every chat node reloads the list for its rooms of this pavilion */
    char *msg = g_strdup_printf("{\"type\":\"banned_words\",\"pavilion\":\"%s\"}", m->id);
    sl_redis_command(sl_server_redis(m->chat->srv), NULL, NULL, "PUBLISH %s %s", SL_CONTROL_CHANNEL,
                     msg);
    g_free(msg);
    mod_reply(m, 200, json_pack("{s:s, s:O}", "pavilion", m->id, "words", m->doc));
}

static void words_loaded(struct redisReply *reply, const char *err, void *user)
{
    struct mod_req *m = user;
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        mod_error(m, 503, "unavailable", "the store is unavailable");
        return;
    }
    if (reply->element[0]->type != REDIS_REPLY_STRING) {
        mod_error(m, 404, "not_found", "no such pavilion");
        return;
    }
    if (m->doc) { /* PUT */
        char *text = json_dumps(m->doc, JSON_COMPACT);
        int rc = sl_redis_command(sl_server_redis(m->chat->srv), words_stored, m,
                                  "SET " SL_KEY_BANNED_WORDS " %s", m->id, text);
        free(text);
        if (rc != SL_OK) mod_error(m, 503, "unavailable", "the store is unavailable");
        return;
    }
    redisReply *w = reply->element[1];
    json_t *words = w->type == REDIS_REPLY_STRING ? json_loadb(w->str, w->len, 0, NULL) : NULL;
    mod_reply(m, 200,
              json_pack("{s:s, s:o}", "pavilion", m->id, "words", words ? words : json_array()));
}

static void words_handle(sl_http_req *req, struct chat *chat, gboolean put)
{
    json_t *body = NULL;
    struct mod_req *m = mod_begin(req, chat, "code", put, &body);
    if (m == NULL) return;
    if (!mod_may(m, SL_ROLE_CONSUL, m->id)) {
        json_decref(body);
        mod_error(m, 403, "forbidden", "banned words are kept by the pavilion's consul");
        return;
    }
    if (put) {
        GError *err = NULL;
        m->doc = chat_words_validate(body, &err);
        json_decref(body);
        if (m->doc == NULL) {
            mod_error(m, 400, "bad_request", err->message);
            g_error_free(err);
            return;
        }
    }
    if (sl_redis_command(sl_server_redis(chat->srv), words_loaded, m,
                         "MGET " SL_KEY_PAVILION " " SL_KEY_BANNED_WORDS, m->id, m->id) != SL_OK)
        mod_error(m, 503, "unavailable", "the store is unavailable");
}

static void words_get(sl_http_req *req, void *user)
{
    words_handle(req, user, FALSE);
}

static void words_put(sl_http_req *req, void *user)
{
    words_handle(req, user, TRUE);
}

void chat_moderation_routes(struct chat *chat)
{
    sl_http_route(chat->srv, "POST", "/api/v1/channels/{id}/moderation", moderation_post, chat);
    sl_http_route(chat->srv, "GET", "/api/v1/pavilions/{code}/banned-words", words_get, chat);
    sl_http_route(chat->srv, "PUT", "/api/v1/pavilions/{code}/banned-words", words_put, chat);
}
