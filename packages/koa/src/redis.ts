// A separate entry point so the plugin's main entry never loads ioredis for users who bring another store.
export { RedisTaskStore, type RedisTaskStoreOptions } from './delivery/stores/RedisTaskStore.ts';
