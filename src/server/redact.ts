/** A URL as it is safe to log: `user:password@` cut out, the rest kept so the message still says where. */
export function redactUrlCredentials(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//[credentials]@');
}
