// payment: the provider interface the checkout uses, and the only provider shipped — a
// development one that moves no money and returns a generated `payment_ref`.
//
// A provider is { id, label, development, async pay({reservation, amountFen, sku}) → {payment_ref} }.
// `pay` rejects (Error with .cancelled = true) when the buyer gives up. A real provider (a wallet's
// JS SDK, a QR code flow) implements the same call; the checkout never knows which one it has.

import { randomKey } from './common.js';

export const developmentProvider = {
  id: 'dev',
  label: 'Development payment — test mode, no money moves',
  development: true,
  async pay({ reservation }) {
    // Behaves like a provider that answers after a short authorisation round trip.
    await new Promise((r) => setTimeout(r, 300));
    return { payment_ref: `dev-${reservation.reservation_id}-${randomKey().slice(0, 8)}` };
  },
};

const providers = new Map([[developmentProvider.id, developmentProvider]]);

export function registerProvider(p) {
  providers.set(p.id, p);
}

// The provider a deployment chose (`?pay=<id>` for trying another), else the development one.
export function currentProvider() {
  const wanted = new URLSearchParams(location.search).get('pay');
  return providers.get(wanted) || developmentProvider;
}
