/** Who issues the invoices: printed as the seller block of the HTML export. */
export interface SellerDetails {
  name: string | null;
  addressLines: string[];
  email: string | null;
  taxId: string | null;
}

/**
 * The seller, from BILLING_SELLER_NAME / _ADDRESS / _EMAIL / _TAX_ID; null when none is set.
 * The one place that knows where seller details come from, so a config file can take over here.
 * The address splits into lines on a newline, a literal "\n" or "|".
 */
export function sellerDetails(env: NodeJS.ProcessEnv = process.env): SellerDetails | null {
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
  return empty ? null : seller;
}
