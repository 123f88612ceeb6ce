import { parseConfig, ConfigError } from '../src/config.js';

test('placeholder', () => {
  expect(() => parseConfig('instance: x\n', 'a.yaml')).toThrow(ConfigError);
});
