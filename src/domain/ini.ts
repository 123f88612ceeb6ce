/** INI files of the EESSI contract (job.cfg, repos.cfg, result files). */

export type IniSections = Record<string, Record<string, string>>;

/** A small INI reader with configparser's rules: `key = value` or `key: value`, indented continuation lines. */
export function parseIni(text: string): IniSections {
  const sections: IniSections = {};
  let current: Record<string, string> | undefined;
  let lastKey: string | undefined;
  for (const line of text.split(/\r?\n/)) {
    if (/^\s*[#;]/.test(line) || line.trim() === '') continue;
    const section = /^\[([^\]]+)\]\s*$/.exec(line);
    if (section) {
      current = sections[section[1]!] ??= {};
      lastKey = undefined;
      continue;
    }
    if (/^\s/.test(line) && current && lastKey) {
      current[lastKey] = `${current[lastKey]}\n${line.trim()}`;
      continue;
    }
    const kv = /^([^=:]+?)\s*[=:]\s*(.*)$/.exec(line);
    if (kv && current) {
      lastKey = kv[1]!.trim().toLowerCase();
      current[lastKey] = kv[2]!.trim();
    }
  }
  return sections;
}

/** Render sections; values must be single-line. */
export function renderIni(sections: IniSections): string {
  return (
    Object.entries(sections)
      .map(([name, kv]) => [`[${name}]`, ...Object.entries(kv).map(([k, v]) => `${k} = ${v}`)].join('\n'))
      .join('\n\n') + '\n'
  );
}
