// The fetch options for form and JSON callbacks now live with the shared HTTP client (test/support/http.ts).
export { formPost, jsonPost } from './http.ts';
