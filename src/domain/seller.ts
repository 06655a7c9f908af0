/** Who issues the invoices: the seller block of an invoice (from billing.config.json `seller`). */
export interface SellerDetails {
  name: string;
  /** Postal address, one entry per printed line. */
  addressLines: string[];
  email: string | null;
  /** VAT / GST / EIN number as printed on the invoice. */
  taxId: string | null;
}
