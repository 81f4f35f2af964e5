// The `libsodium` npm package ships no types: its ES module's default export is emscripten's module
// factory (options → a promise of the module). crypto.ts describes the exports it calls
// (`SodiumModule`); this declaration only makes the import typecheck.
declare module 'libsodium' {
  const factory: (options?: object) => Promise<unknown>;
  export default factory;
}
