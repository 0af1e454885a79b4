/* scripts: the sources of chat's Redis scripts (see scripts.c for their keys and answers). */
#ifndef CHAT_SCRIPTS_H
#define CHAT_SCRIPTS_H

extern const char chat_lua_send[], chat_lua_join[], chat_lua_presence[], chat_lua_moderate[];

#endif
