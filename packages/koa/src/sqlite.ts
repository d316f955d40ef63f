// A separate entry point so the plugin's main entry never loads node:sqlite for users who bring another store.
export { SqliteTaskStore, type SqliteTaskStoreOptions } from './delivery/stores/SqliteTaskStore.ts';
