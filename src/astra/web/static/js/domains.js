// The store-domain rules of src/astra/integrations/domains.py, in the browser, so the form
// can say what is wrong while the seller types. Same steps, same order, same sentences;
// tests/ui/test_domain_rules.py runs both over the same inputs. The server stays the
// authority: for rare non-ASCII names the browser has no IDNA 2008 tables, so it checks
// a close approximation here and shows the API's 422 next to the field if they disagree.

const SCHEME = /[a-z][a-z0-9+.-]*:\/\//iu;
const PORT = /^[0-9]*$/;
const LDH_LABEL = /^[a-z0-9-]+$/;
const MYSHOPIFY = /^[a-z0-9][a-z0-9-]*\.myshopify\.com$/;
const NUMERIC_TLD = /^(?:[0-9]+|0x[0-9a-f]*)$/;
const LOCAL_TLDS = new Set(["localhost", "local", "internal"]);
// Exactly the characters Python's str.isspace() accepts.
const SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const HAS_SPACE = new RegExp(`[${SPACE}]`, "u");
const STRIP = new RegExp(`^[${SPACE}]+|[${SPACE}]+$`, "gu");
const MAX_REMAP_INPUT = 1024;

const EMPTY = "Enter your store's domain, like my-shop.myshopify.com.";
const IP_ADDRESS = "Enter your store's domain name, not an IP address.";
const SPACES = "A domain can't contain spaces. Enter just the address, like shop.example.com.";

export const NAME_MAX = 100;

class InvalidDomain extends Error {}

const notADomain = (reason) => new InvalidDomain(`That doesn't look like a domain: ${reason}.`);

function extractHost(raw) {
  let text = raw.replace(STRIP, "");
  if (HAS_SPACE.test(text)) throw new InvalidDomain(SPACES);
  text = text.replace(SCHEME, "");
  const authority = text.split(/[/?#]/u, 1)[0];
  // Browsers treat everything up to the last "@" as userinfo.
  let host = authority.slice(authority.lastIndexOf("@") + 1);
  if (host.startsWith("[")) throw new InvalidDomain(IP_ADDRESS);
  const colon = host.indexOf(":");
  const port = colon === -1 ? "" : host.slice(colon + 1);
  if (colon !== -1) host = host.slice(0, colon);
  if (!PORT.test(port)) throw notADomain("the part after the colon should be a port number");
  return host;
}

// UTS 46 mapping, approximated with NFKC and lower-casing (exact for ASCII).
const UTS46_IGNORED = /[\u00ad\u034f\u180b-\u180f\u200b\u2060\ufe00-\ufe0f\ufeff]/gu;
const UTS46_DISALLOWED = /[\x80-\x9f\p{Cs}\p{Co}\p{Cn}\u200e\u200f\u202a-\u202e\u2061-\u206f\ufff9-\ufffd]/u;

function remap(host) {
  const disallowed = notADomain("it contains characters that aren't allowed in a domain name");
  if ([...host].length > MAX_REMAP_INPUT) throw disallowed;
  if (isAscii(host)) return host.toLowerCase();
  if (UTS46_DISALLOWED.test(host)) throw disallowed;
  return host
    .replace(UTS46_IGNORED, "")
    .normalize("NFKC")
    .toLowerCase()
    .normalize("NFKC")
    .replace(/[\u3002\uff0e\uff61]/gu, ".")
    .replace(CHEROKEE_FOLDS, (ch) => String.fromCodePoint(foldCherokee(ch.codePointAt(0))))
    .normalize("NFC");
}

// Case folding, unlike lower-casing, turns Cherokee small letters into the capitals.
const CHEROKEE_FOLDS = /[\uab70-\uabbf\u13f8-\u13fd]/gu;

function foldCherokee(cp) {
  return cp >= 0xab70 ? cp - 0xab70 + 0x13a0 : cp - 8;
}

// RFC 3492 Punycode over arrays of code points, as Python's "punycode" codec does it.
const BASE = 36;
const DIGITS = "abcdefghijklmnopqrstuvwxyz0123456789";

function threshold(j, bias) {
  return Math.min(26, Math.max(1, BASE * (j + 1) - bias));
}

function adapt(delta, first, count) {
  let d = first ? Math.floor(delta / 700) : Math.floor(delta / 2);
  d += Math.floor(d / count);
  let k = 0;
  while (d > 455) {
    d = Math.floor(d / 35);
    k += BASE;
  }
  return k + Math.floor((BASE * d) / (d + 38));
}

function punycodeEncode(points) {
  const output = points.filter((cp) => cp < 0x80).map((cp) => String.fromCodePoint(cp));
  const basic = output.length;
  if (basic) output.push("-");
  let n = 0x80;
  let delta = 0;
  let bias = 72;
  let handled = basic;
  while (handled < points.length) {
    const next = Math.min(...points.filter((cp) => cp >= n));
    delta += (next - n) * (handled + 1);
    n = next;
    for (const cp of points) {
      if (cp < n) delta += 1;
      if (cp !== n) continue;
      let q = delta;
      for (let j = 0; ; j += 1) {
        const t = threshold(j, bias);
        if (q < t) break;
        output.push(DIGITS[t + ((q - t) % (BASE - t))]);
        q = Math.floor((q - t) / (BASE - t));
      }
      output.push(DIGITS[q]);
      bias = adapt(delta, handled === basic, handled + 1);
      delta = 0;
      handled += 1;
    }
    delta += 1;
    n += 1;
  }
  return output.join("");
}

function punycodeDecode(text) {
  const dash = text.lastIndexOf("-");
  const points = dash === -1 ? [] : [...text.slice(0, dash)].map((ch) => ch.codePointAt(0));
  const extended = dash === -1 ? text : text.slice(dash + 1);
  let char = 0x80;
  let pos = -1;
  let bias = 72;
  let index = 0;
  while (index < extended.length) {
    const first = index === 0;
    let delta = 0;
    let weight = 1;
    for (let j = 0; ; j += 1) {
      if (index >= extended.length) throw new InvalidDomain("incomplete punycode");
      const code = extended.toUpperCase().charCodeAt(index);
      index += 1;
      let digit;
      if (code >= 0x41 && code <= 0x5a) digit = code - 0x41;
      else if (code >= 0x30 && code <= 0x39) digit = code - 22;
      else throw new InvalidDomain("invalid punycode digit");
      const t = threshold(j, bias);
      delta += digit * weight;
      if (digit < t) break;
      weight *= BASE - t;
    }
    pos += delta + 1;
    char += Math.floor(pos / (points.length + 1));
    if (char > 0x10ffff) throw new InvalidDomain("invalid punycode character");
    pos %= points.length + 1;
    points.splice(pos, 0, char);
    bias = adapt(delta, first, points.length);
  }
  return points;
}

// IDNA 2008's per-label checks. Letters, marks and digits that case folding and NFKC leave
// alone stand in for the PVALID table (old Hangul jamo excepted), right-to-left scripts for
// the Bidi rule; joiners are left to the server.
const IDNA_ALLOWED = /^[\p{Ll}\p{Lo}\p{Lm}\p{Mn}\p{Mc}\p{Nd}-]$/u;
const OLD_HANGUL_JAMO = /[\u1100-\u11ff\ua960-\ua97f\ud7b0-\ud7ff]/u;
const RTL_SCRIPT =
  /[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}\p{Script=Samaritan}\p{Script=Mandaic}\p{Script=Adlam}\p{Script=Hanifi_Rohingya}\p{Script=Yezidi}]/u;
const isLetter = (ch) => /\p{L}/u.test(ch);
// N'Ko digits are strong right-to-left characters, unlike Arabic digits.
const isRtlLetter = (ch) => (isLetter(ch) && RTL_SCRIPT.test(ch)) || /[\u07c0-\u07c9]/u.test(ch);
const isRtl = (ch) => /[\p{L}\p{Nd}]/u.test(ch) && RTL_SCRIPT.test(ch);

function bidiOk(label) {
  const chars = [...label];
  if (!chars.some(isRtl)) return true;
  return (
    isRtlLetter(chars[0]) &&
    chars.every((ch) => !isLetter(ch) || isRtlLetter(ch)) &&
    /[\p{L}\p{N}]\p{M}*$/u.test(label)
  );
}

const CHEROKEE_UPPER = /[\u13a0-\u13f5]/u;
const CHEROKEE_SMALL = /[\u13f8-\u13fd\uab70-\uabbf]/u;
const KATAKANA_MIDDLE_DOT = "\u30fb";
const JAPANESE = /[\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Han}]/u;

function pvalid(ch) {
  if (ch.normalize("NFKC") !== ch) return false;
  // Case folding keeps Cherokee capitals: it folds the small letters to them.
  if (CHEROKEE_UPPER.test(ch)) return true;
  return !CHEROKEE_SMALL.test(ch) && IDNA_ALLOWED.test(ch) && ch.toLowerCase() === ch;
}

function idnaLabelOk(points) {
  const label = String.fromCodePoint(...points);
  if (!points.length || points.length > 254) return false;
  if (label.normalize("NFC") !== label) return false;
  const hyphen = 0x2d;
  if (points[2] === hyphen && points[3] === hyphen) return false;
  if (points[0] === hyphen || points.at(-1) === hyphen) return false;
  if (/^\p{M}/u.test(label) || OLD_HANGUL_JAMO.test(label) || !bidiOk(label)) return false;
  return [...label].every((ch) => pvalid(ch) || (ch === KATAKANA_MIDDLE_DOT && JAPANESE.test(label)));
}

function isAscii(text) {
  return /^[\x00-\x7f]*$/u.test(text);
}

// idna.alabel(): an A-label (xn--) must decode to a valid U-label that encodes back to it.
function alabelOk(label) {
  if (isAscii(label)) {
    if (!label.startsWith("xn--")) return idnaLabelOk([...label].map((ch) => ch.codePointAt(0)));
    try {
      const points = punycodeDecode(label.slice(4));
      return punycodeEncode(points) === label.slice(4) && idnaLabelOk(points);
    } catch {
      return false;
    }
  }
  const points = [...label].map((ch) => ch.codePointAt(0));
  return idnaLabelOk(points) && 4 + punycodeEncode(points).length <= 63;
}

function toAsciiLabel(label) {
  if (!label) throw notADomain("it has an empty part between dots");
  // Plain ASCII labels are checked here first so the common mistakes get a specific message.
  if (isAscii(label)) {
    if (label.length > 63) throw notADomain("each part between dots must be at most 63 characters");
    if (label.startsWith("-") || label.endsWith("-")) {
      throw notADomain("a part can't start or end with a hyphen");
    }
    if (!LDH_LABEL.test(label)) throw notADomain("use only letters, digits, hyphens and dots");
  }
  if (!alabelOk(label)) throw notADomain(`“${label}” isn't allowed in a domain name`);
  return isAscii(label) ? label : `xn--${punycodeEncode([...label].map((ch) => ch.codePointAt(0)))}`;
}

export function normalizeDomain(raw) {
  let host = remap(extractHost(raw));
  // A trailing dot is the DNS root: same host, so drop it to keep one spelling per store.
  if (host.endsWith(".")) host = host.slice(0, -1);
  if (!host) throw new InvalidDomain(EMPTY);
  const domain = host.split(".").map(toAsciiLabel).join(".");
  if (domain.length > 253) throw notADomain("it's longer than 253 characters");
  return domain;
}

function checkShopify(domain) {
  // Webhooks and the Admin API identify a store by its permanent address, never a custom domain.
  if (!MYSHOPIFY.test(domain)) {
    throw new InvalidDomain(
      "Use your store's permanent .myshopify.com address " +
        "(for example my-shop.myshopify.com), not a custom domain.",
    );
  }
}

function checkWoocommerce(domain) {
  const tld = domain.slice(domain.lastIndexOf(".") + 1);
  if (LOCAL_TLDS.has(tld)) {
    throw new InvalidDomain(
      "That's a local address. Enter the public domain your store is reachable at, " +
        "like shop.example.com.",
    );
  }
  if (NUMERIC_TLD.test(tld)) throw new InvalidDomain(IP_ADDRESS);
  if (!domain.includes(".")) {
    throw new InvalidDomain(
      "Enter your store's full domain, including its ending, like shop.example.com.",
    );
  }
}

const PLATFORM_CHECKS = { shopify: checkShopify, woocommerce: checkWoocommerce };

/** Normalise `raw` and apply `platform`'s rule: {ok: true, domain} or {ok: false, message}. */
export function validateDomain(platform, raw) {
  const check = PLATFORM_CHECKS[platform];
  if (!check) throw new Error(`unknown platform: ${platform}`);
  try {
    const domain = normalizeDomain(raw);
    check(domain);
    return { ok: true, domain };
  } catch (error) {
    if (error instanceof InvalidDomain) return { ok: false, message: error.message };
    throw error;
  }
}

/** The store name rule of IntegrationCreate: 1 to 100 characters once trimmed. */
export function validateStoreName(raw) {
  const name = raw.replace(STRIP, "");
  if (!name) return { ok: false, message: "Enter a name for this store." };
  if ([...name].length > NAME_MAX) {
    return { ok: false, message: `Use at most ${NAME_MAX} characters.` };
  }
  return { ok: true, name };
}
