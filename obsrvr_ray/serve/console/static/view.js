// What every view shares: its section of the page, the banner, and the parts of the section it
// uses, looked up once. A view names its parts in one list; their ids are `<view>-<part>`.

import { el } from "./format.js";

// The event types of token_transfers (`event_topic`): the live filters' checkboxes and the
// volume view's choice are both made from this one list.
export const EVENT_TYPES = ["transfer", "mint", "burn", "clawback", "fee"];

/** `#<view>-<name>` under `root` for each name, keyed by the name in camelCase (`rows-title` ->
 * rowsTitle). A part missing from index.html fails when the console starts, naming its id,
 * rather than as a null where it is first used. */
export function parts(root, view, names) {
  return Object.fromEntries(names.map((name) => {
    const found = root.querySelector(`#${view}-${name}`);
    if (!found) throw new Error(`console: index.html has no #${view}-${name}`);
    return [name.replace(/-(\w)/g, (_, letter) => letter.toUpperCase()), found];
  }));
}

/** A <select>'s options, from [value, text] pairs; `chosen`: the value selected by default. */
export function setOptions(select, choices, chosen) {
  select.replaceChildren(...choices.map(([value, text]) =>
    el("option", { value, text, selected: value === chosen ? "" : undefined })));
}

export class View {
  /** `name`: the view's id prefix; `names`: its parts (this.ui). */
  constructor(root, { banner }, name, names) {
    this.root = root;
    this.banner = banner;
    this.ui = parts(root, name, names);
  }

  show() {}
}
