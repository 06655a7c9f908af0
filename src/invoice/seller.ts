import type { SellerDetails as ConfiguredSeller } from '../domain/seller.js';

/** Who issues the invoices: printed as the seller block of the HTML export. */
export type SellerDetails = Omit<ConfiguredSeller, 'name'> & { name: string | null };

/**
 * The seller: from BILLING_SELLER_NAME / _ADDRESS / _EMAIL / _TAX_ID when any is set (the
 * environment over the file, as everywhere), else the config file's `seller`, else null.
 * The address splits into lines on a newline, a literal "\n" or "|".
 */
export function sellerDetails(env: NodeJS.ProcessEnv = process.env, configured?: ConfiguredSeller): SellerDetails | null {
  const get = (k: string) => {
    const v = env[k]?.trim();
    return v ? v : null;
  };
  const address = get('BILLING_SELLER_ADDRESS');
  const seller: SellerDetails = {
    name: get('BILLING_SELLER_NAME'),
    addressLines: address === null ? [] : address.split(/\r?\n|\\n|\|/).map((l) => l.trim()).filter((l) => l !== ''),
    email: get('BILLING_SELLER_EMAIL'),
    taxId: get('BILLING_SELLER_TAX_ID'),
  };
  const empty = seller.name === null && seller.addressLines.length === 0 && seller.email === null && seller.taxId === null;
  return empty ? (configured ?? null) : seller;
}
