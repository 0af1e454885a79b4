/* keys: every Redis key and pub/sub channel of silklive, one place for the whole data model.
 * Keys share a hash tag per unit that a script touches at once (one cluster slot each): the
 * catalogue {cat}, a sale {sale:<id>}, a buyer {buyer:<user>}, a room {room:<channel>}. */
#ifndef SL_ROOM_KEYS_H
#define SL_ROOM_KEYS_H

/* ---- the catalogue {cat}: commerce owns the documents, ingest and transcode read them ---- */
#define SL_KEY_PAVILIONS       "sl:{cat}:pavs"                /* set of pavilion codes */
#define SL_KEY_PAVILION        "sl:{cat}:pav:%s"              /* pavilion document (JSON) */
#define SL_KEY_PAV_CHANNELS    "sl:{cat}:pav:%s:chans"        /* set of a pavilion's channel ids */
#define SL_KEY_PAV_PRODUCTS    "sl:{cat}:pav:%s:products"     /* set of a pavilion's SKUs */
#define SL_KEY_PAV_ORDERS      "sl:{cat}:pav:%s:orders"       /* zset: created_at_ms -> order id */
#define SL_KEY_BANNED_WORDS    "sl:{cat}:pav:%s:banned_words" /* JSON array of strings (chat) */
#define SL_KEY_CHANNELS        "sl:{cat}:chans"               /* set of every channel id */
#define SL_KEY_CHANNEL         "sl:{cat}:chan:%s"      /* channel document (JSON, has "pavilion") */
#define SL_KEY_STREAMKEY       "sl:{cat}:streamkey:%s" /* -> channel id */
#define SL_KEY_CHAN_PIN        "sl:{cat}:chan:%s:pin"  /* the pinned SKU */
#define SL_KEY_CHAN_SALES      "sl:{cat}:chan:%s:sales"   /* zset: created_at_ms -> sale id */
#define SL_KEY_CHAN_VIEWERS    "sl:{cat}:chan:%s:viewers" /* viewers across nodes, kept by chat */
#define SL_KEY_CHAN_LIVE       "sl:{cat}:chan:%s:live"    /* JSON while live (transcode), a lease */
#define SL_KEY_CHAN_PUBLISHER  "sl:{cat}:chan:%s:publisher"  /* ingest's one-publisher lease */
#define SL_KEY_CHAN_BROADCASTS "sl:{cat}:chan:%s:broadcasts" /* hash: broadcast id -> document */
#define SL_KEY_CHAN_HIGHLIGHTS "sl:{cat}:chan:%s:highlights" /* list of clip documents */
#define SL_KEY_LIVE_CHANS      "sl:{cat}:live"               /* zset: started_at_ms -> channel id */
#define SL_KEY_PRODUCT         "sl:{cat}:product:%s"         /* product document (JSON) */
#define SL_KEY_SALES_OPEN      "sl:{cat}:sales:open"         /* set of sales the sweeper watches */

/* ---- a flash sale {sale:<id>} (commerce/lua: reserve, confirm, release, sweep, control) ---- */
#define SL_KEY_SALE_INV    "sl:{sale:%s}:inv"        /* hash: the sale and its counters */
#define SL_KEY_SALE_RES    "sl:{sale:%s}:res"        /* hash: reservation id -> JSON */
#define SL_KEY_SALE_EXP    "sl:{sale:%s}:exp"        /* zset: expires_at_ms -> reservation id */
#define SL_KEY_SALE_USER   "sl:{sale:%s}:user"       /* hash: user -> units held or bought */
#define SL_KEY_SALE_IDEM   "sl:{sale:%s}:idem:%s:%s" /* idempotency key -> answer */
#define SL_KEY_SALE_ORDERS "sl:{sale:%s}:orders"     /* stream: the sale's durable orders */
#define SL_KEY_SALE_PAY    "sl:{sale:%s}:pay"        /* hash: payment id -> payment (JSON) */
#define SL_KEY_SALE_ODOCS  "sl:{sale:%s}:orderdocs"  /* hash: order id -> order (JSON), its state */

/* ---- a buyer {buyer:<user>} ---- */
#define SL_KEY_BUYER_SPENT   "sl:{buyer:%s}:spent:%d"  /* CNY fen spent in a year (quota) */
#define SL_KEY_BUYER_ORDERS  "sl:{buyer:%s}:orders"    /* zset: created_at_ms -> order id */
#define SL_KEY_BUYER_DOCS    "sl:{buyer:%s}:orderdocs" /* hash: order id -> document (first round) */
#define SL_KEY_BUYER_PROFILE "sl:{buyer:%s}:profile"   /* the checkout form, identity sealed */
/* per person: keyed by the identity number's reference (cm_id_number_ref), not the account */
#define SL_KEY_PERSON_SPENT "sl:{person:%s}:spent:%d" /* CNY fen bought in a year (quota) */

/* ---- payments and customs ---- */
#define SL_KEY_PAY_NONCES       "sl:{pay}:nonce:%s:%s"  /* provider, nonce: seen notifications */
#define SL_KEY_PAY_REFUNDS      "sl:{pay}:refunds"      /* stream: refunds to ask providers for */
#define SL_KEY_CUSTOMS_OUTBOX   "sl:{customs}:outbox"   /* stream: orders to declare */
#define SL_KEY_CUSTOMS_GUIDS    "sl:{customs}:guid"     /* hash: guid -> order id (receipts) */
#define SL_KEY_CUSTOMS_REJECTED "sl:{customs}:rejected" /* zset: updated_at_ms -> order id */

/* ---- a channel's room {room:<channel>} ---- */
/* The capped history stream (entries {"e": event text without id}; the stream id is the event
 * id) and the state snapshot (hash: "pinned" -> the latest pin event, "sale:<id>" -> that
 * sale's latest event). */
#define SL_KEY_ROOM_HISTORY  "sl:{room:%s}:history"
#define SL_KEY_ROOM_STATE    "sl:{room:%s}:state"
#define SL_KEY_ROOM_MUTE     "sl:{room:%s}:mute:%s"  /* a muted user, with its expiry */
#define SL_KEY_ROOM_BAN      "sl:{room:%s}:ban:%s"   /* a banned user */
#define SL_KEY_ROOM_RATE     "sl:{room:%s}:rate:%s"  /* a sender's token bucket */
#define SL_KEY_ROOM_DELETED  "sl:{room:%s}:deleted"  /* hash: deleted message ids */
#define SL_KEY_ROOM_PRESENCE "sl:{room:%s}:presence" /* hash: node -> viewers:ts_ms */
#define SL_ROOM_HISTORY_MAX  2000

/* ---- pub/sub ---- */
#define SL_ROOM_CHANNEL "silklive:room:%s" /* a room's events, every node listens */
#define SL_CONTROL_CHANNEL \
    "silklive:control" /* configuration changes between nodes (stream keys) */

#endif
