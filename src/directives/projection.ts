import { keyedProjection } from '../projections/keyed.ts';
import { DIRECTIVE_COLUMNS, type DirectiveRow } from './model.ts';
import { directiveIdOf, evolveDirective } from './reducer.ts';

export const directivesProjection = keyedProjection<DirectiveRow>({
  name: 'directives',
  table: 'directives',
  columns: DIRECTIVE_COLUMNS,
  handles: (type) => type.startsWith('directive.'),
  keyOf: directiveIdOf,
  evolve: evolveDirective,
  creates: (signal) => signal.type === 'directive.proposed',
});
