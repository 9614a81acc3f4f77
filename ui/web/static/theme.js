// Applies the stored theme before the first paint (a classic script in
// <head>, as inline scripts are forbidden by the CSP). Without one, the
// stylesheet follows prefers-color-scheme.
try {
  const t = localStorage.getItem('cdnpilot.theme');
  if (t === 'light' || t === 'dark') document.documentElement.dataset.theme = t;
} catch {
  // Storage disabled: follow the system.
}
