/** The status page's one stylesheet, served as /style.css (kept in TypeScript so that dist/ has it). */
export const STYLESHEET = `
:root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --run: #0969da; --wait: #57606a; --line: #d0d7de; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #1f2328; }
header h1 { font-size: 1.4rem; margin: 1rem 0 0; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 0.4rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 0.95rem; }
a { color: var(--run); }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
thead th { background: #f6f8fa; }
.mono, pre { font-family: ui-monospace, monospace; font-size: 0.9em; }
pre { background: #f6f8fa; padding: 0.6rem; overflow-x: auto; white-space: pre-wrap; max-height: 30rem; }
.muted, .none { color: var(--wait); }
.ok { color: var(--ok); } .bad { color: var(--bad); } .warn { color: var(--warn); }
.run { color: var(--run); } .wait { color: var(--wait); }
.cell { text-align: center; font-weight: 600; }
.cell.ok { background: #dafbe1; } .cell.bad { background: #ffebe9; } .cell.run { background: #ddf4ff; }
.title { max-width: 30rem; overflow-wrap: anywhere; }
`;
