import { parse, postprocess, preprocess } from 'micromark';
const cases = {};
{ let s = ''; let i = 0; while (s.length < 60000) { s += ' '.repeat(2 * i) + '- a\n'; i++; } cases.indentLists = s; }
{ let s = ''; let i = 1; while (s.length < 60000) { s += '> '.repeat(i) + 'a\n'; i++; } cases.progressiveQuotes = s; }
cases.brackets = '['.repeat(30000) + ']'.repeat(30000);
cases.stars = '*'.repeat(30000) + 'a' + '*'.repeat(30000);
cases.starsMixed = '*a _b '.repeat(10000);
{ let s = ''; let i = 1; while (s.length < 60000) { s += '`'.repeat(i) + ' x '; i++; } cases.ticks = s; }
cases.links = '[a](b '.repeat(10000);
cases.images = '![['.repeat(20000);
cases.entities = '&'.repeat(60000);
cases.lt = '<'.repeat(60000);
cases.htmlopen = '<a href="'.repeat(6000);
cases.lines = 'a\n'.repeat(30000);
cases.quotelines = '> a\n'.repeat(15000);
cases.fence = '```\n'.repeat(15000);
cases.defs = '[a]: b\n'.repeat(8000);
for (const [name, body] of Object.entries(cases)) {
  const t = performance.now();
  postprocess(parse().document().write(preprocess()(body + '\n\nbot: help', undefined, true)));
  console.log(name, body.length, Math.round(performance.now() - t));
}
