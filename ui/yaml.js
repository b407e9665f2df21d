// A small YAML writer for showing specs and statuses and for the Restore a user copies
// into git: block style, keys in their order, strings quoted whenever plain YAML could
// read them as something else.

const PLAIN = /^[A-Za-z_/.][A-Za-z0-9_ ./@:+-]*$/;
const RESERVED = /^(true|false|yes|no|on|off|null|~|y|n)$/i;

function scalar(value) {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const text = String(value);
  if (text !== '' && PLAIN.test(text) && !RESERVED.test(text) && !/: |\s$| #/.test(text)) {
    return text;
  }
  return JSON.stringify(text);
}

function isEmpty(value) {
  return (Array.isArray(value) && value.length === 0)
    || (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 0);
}

function lines(value, indent, out) {
  const pad = '  '.repeat(indent);
  if (Array.isArray(value)) {
    for (const item of value) {
      if (item && typeof item === 'object' && !isEmpty(item)) {
        const inner = [];
        lines(item, indent + 1, inner);
        out.push(`${pad}- ${inner[0].trimStart()}`, ...inner.slice(1));
      } else {
        out.push(`${pad}- ${isEmpty(item) ? (Array.isArray(item) ? '[]' : '{}') : scalar(item)}`);
      }
    }
    return;
  }
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined) continue;
    const k = scalar(key);
    if (item && typeof item === 'object' && !isEmpty(item)) {
      out.push(`${pad}${k}:`);
      lines(item, indent + (Array.isArray(item) ? 0 : 1), out);
    } else {
      out.push(`${pad}${k}: ${isEmpty(item) ? (Array.isArray(item) ? '[]' : '{}') : scalar(item)}`);
    }
  }
}

/** `value` (an object) as a YAML document. */
export function toYaml(value) {
  const out = [];
  lines(value, 0, out);
  return `${out.join('\n')}\n`;
}
