--- livekv for Neovim: ghost-text code completion from the `livekv serve` language server.
---
--- `require('livekv').setup({...})` hands Neovim's own LSP configuration the server:
--- `vim.lsp.config('livekv', {...})` (cmd, filetypes, root, settings) and `vim.lsp.enable('livekv')`,
--- so Neovim starts or reuses the client for each buffer of `filetypes` (0.11+). A later
--- `vim.lsp.config('livekv', {...})` of your own overrides any field, and `vim.lsp.enable('livekv',
--- false)` then `vim.lsp.enable('livekv')` restarts it.
---
--- On Neovim 0.12+ the built-in `vim.lsp.inline_completion` shows the suggestions. Its public API
--- is `enable`, `is_enabled`, `select` (cycle) and `get` (accept, with an optional `on_accept`
--- handler); it has no accept-word, accept-line or dismiss of its own. Here `accept_word` and
--- `accept_line` are `get()` with an `on_accept` that inserts only that part (the built-in hides the
--- item before calling it, so the rest comes back with its next answer instead of staying shown),
--- and `dismiss` is `get()` with an `on_accept` that inserts nothing (the built-in's hide and cancel).
--- `next`/`prev` only cycle there: the built-in has no public "ask now".
---
--- On 0.11 this file carries a small equivalent: a debounced `textDocument/inlineCompletion`
--- request from insert mode (the newest cancels the one in flight, answers for an older buffer
--- state are dropped), the first item drawn with extmarks (inline virtual text for the rest of
--- the line, virtual lines below), typing through a suggestion shrinks it instead of asking
--- again, and keys to accept all / a word / a line, cycle the drafts or dismiss.

local M = {}

---@class livekv.Keymaps
---@field accept string|false       accept the whole suggestion; the key's own meaning when none is shown
---@field accept_word string|false  accept the next word of the suggestion
---@field accept_line string|false  accept the rest of the suggestion's current line
---@field next string|false         show the next draft; asks for a suggestion when none is shown
---@field prev string|false         show the previous draft; asks for a suggestion when none is shown
---@field dismiss string|false      hide the suggestion (until the next edit)

---@class livekv.Config
local defaults = {
  --- The command that starts the server on stdio (`cmd` of `vim.lsp.config`: a list, or a function
  --- that returns an RPC client).
  ---@type string[]|fun(dispatchers: vim.lsp.rpc.Dispatchers): vim.lsp.rpc.PublicClient
  cmd = { 'livekv', 'serve' },
  --- Server settings with the README's camelCase names (`threads`, `drafts`, `maxTokens`, ...),
  --- sent as `initializationOptions` and as `settings`; what is left out takes the server's default.
  --- `modelPath`, `threads`, `weights` and `device` take effect after a restart (see `configure`).
  ---@type table<string, any>
  settings = {},
  --- Buffers of these filetypes start (or reuse) the server (`filetypes` of `vim.lsp.config`).
  ---@type string[]
  filetypes = { 'python' },
  --- The first directory upwards holding one of these is the workspace root; else the file's
  --- directory (a `root_dir` function of `vim.lsp.config` over `vim.fs.root`, for that fallback).
  ---@type string[]
  root_markers = { 'pyproject.toml', 'setup.py', '.git' },
  --- Quiet time after the last keystroke or cursor move before a suggestion is asked for (ms).
  --- The server adds its own adaptive wait (its `debounceMs` setting) on top.
  debounce_ms = 75,
  --- Ask for suggestions while typing; false: only when `keymaps.next`/`prev` is pressed.
  auto_trigger = true,
  --- Use `vim.lsp.inline_completion` where Neovim has it (0.12+); false: always this file's own code.
  --- There `debounce_ms`, `auto_trigger` and `hl_group` are the built-in's own (200 ms, on, ComplHint).
  use_builtin = true,
  --- Highlight group of the ghost text.
  hl_group = 'Comment',
  --- Insert-mode keys; false turns one off. Every key keeps its usual meaning while no
  --- suggestion is shown (<C-Right> moves a word, <Tab> inserts a tab, <C-]> expands abbreviations).
  ---@type livekv.Keymaps
  keymaps = {
    accept = '<Tab>',
    accept_word = '<C-Right>',
    accept_line = '<M-l>',
    next = '<M-]>',
    prev = '<M-[>',
    dismiss = '<C-]>',
  },
}

---@type livekv.Config
M.config = vim.deepcopy(defaults)

local ns = vim.api.nvim_create_namespace('livekv')
local augroup = vim.api.nvim_create_augroup('livekv', { clear = true })
local INLINE = 'textDocument/inlineCompletion'

--- One suggestion: `text` replaces the buffer from (row, col) to the cursor (the partial word
--- before the cursor, which `text` starts with).
---@class livekv.Item
---@field text string
---@field row integer 0-based
---@field col integer 0-based byte column

--- The state of one buffer on the own (0.11) path.
---@class livekv.Buffer
---@field client_id integer
---@field items livekv.Item[] the last answer's items, duplicates removed
---@field index integer the item shown
---@field suffix string the line after the cursor when the items were asked for
---@field extmark integer? the ghost text, while shown
---@field request_id integer? the request in flight
---@field timer uv.uv_timer_t the debounce timer

---@type table<integer, livekv.Buffer>
local buffers = {}

---@alias livekv.Status.state 'off'|'starting'|'loading'|'ready'|'waiting'|'error'

--- What the status line and `:checkhealth livekv` show.
---@class livekv.Status
---@field state livekv.Status.state
---@field message string? the current `$/progress` title, or the last error
---@field model string?
---@field latency_ms integer? the last suggestion's time on the server
---@field first_token_ms integer?
---@field enabled boolean automatic suggestions on (see `toggle`)
---@field builtin boolean whether `vim.lsp.inline_completion` is used
local status = { state = 'off', enabled = true, builtin = false }
local progress_titles = {} ---@type table<integer|string, string> `$/progress` token -> title

--- Redraw the status lines (they show `statusline()`), outside any fast callback.
local function refresh()
  vim.schedule(function()
    vim.cmd.redrawstatus({ bang = true })
  end)
end

---@param state livekv.Status.state
---@param message? string
local function set_state(state, message)
  status.state, status.message = state, message
  refresh()
end

---@return boolean
local function use_builtin()
  return M.config.use_builtin and vim.lsp.inline_completion ~= nil
end

-- Ghost text ----------------------------------------------------------------------------------

---@param b livekv.Buffer
---@param bufnr integer
local function hide(b, bufnr)
  if b.extmark then
    pcall(vim.api.nvim_buf_del_extmark, bufnr, ns, b.extmark)
    b.extmark = nil
  end
end

--- The text from the item's start to the cursor, or nil when the cursor is not after the start
--- or the rest of the line is no longer what it was when the item was asked for.
---@param b livekv.Buffer
---@param item livekv.Item
---@return string?
local function typed_for(b, item)
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  row = row - 1
  if row < item.row or (row == item.row and col < item.col) then
    return nil
  end
  local line = vim.api.nvim_get_current_line()
  if line:sub(col + 1) ~= b.suffix then
    return nil
  end
  return table.concat(vim.api.nvim_buf_get_text(0, item.row, item.col, row, col, {}), '\n')
end

--- The part of `item` not typed yet, or nil when the typed text left it (or used it up).
---@param b livekv.Buffer
---@param item livekv.Item?
---@return string?
local function remaining(b, item)
  local typed = item and typed_for(b, item)
  if not typed or #item.text <= #typed or item.text:sub(1, #typed) ~= typed then
    return nil
  end
  return item.text:sub(#typed + 1)
end

--- Draw the current item after the cursor; false (and nothing drawn) when it no longer fits.
---@param bufnr integer
---@return boolean
local function render(bufnr)
  local b = buffers[bufnr]
  if not b then
    return false
  end
  hide(b, bufnr)
  local ghost = remaining(b, b.items[b.index])
  if not ghost then
    return false
  end
  local lines = vim.split(ghost, '\n', { plain = true })
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], M.config.hl_group } }
  end
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  b.extmark = vim.api.nvim_buf_set_extmark(bufnr, ns, row - 1, col, {
    virt_text = lines[1] ~= '' and { { lines[1], M.config.hl_group } } or nil,
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
  })
  return true
end

---@param bufnr integer
local function cancel(bufnr)
  local b = buffers[bufnr]
  local client = b and vim.lsp.get_client_by_id(b.client_id)
  if b and b.request_id and client then
    client:cancel_request(b.request_id)
  end
  if b then
    b.request_id = nil
    b.timer:stop()
  end
  if status.state == 'waiting' then
    set_state('ready')
  end
end

--- Hide the ghost text, forget the items and stop the request in flight (the own path).
---@param bufnr integer
local function clear(bufnr)
  local b = buffers[bufnr]
  if b then
    cancel(bufnr)
    hide(b, bufnr)
    b.items, b.index = {}, 1
  end
end

--- Hide the suggestion until the next edit and stop the request in flight.
---@param bufnr integer?
function M.dismiss(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if use_builtin() then
    -- The built-in has no hide of its own: `get()` hides the item and cancels pending requests
    -- before it calls `on_accept`, and this one inserts nothing.
    vim.lsp.inline_completion.get({ bufnr = bufnr, on_accept = function() end })
  else
    clear(bufnr)
  end
end

--- Whether a suggestion is shown in the buffer.
---@param bufnr integer?
---@return boolean
function M.visible(bufnr)
  if use_builtin() then
    return false -- the built-in path keeps its own state
  end
  local b = buffers[bufnr or vim.api.nvim_get_current_buf()]
  return b ~= nil and b.extmark ~= nil
end

-- Requests ------------------------------------------------------------------------------------

--- The items of an InlineCompletionList (or item array) as byte positions, duplicates removed.
---@param result lsp.InlineCompletionList|lsp.InlineCompletionItem[]|nil
---@param encoding string the client's offset encoding
---@param bufnr integer
---@return livekv.Item[]
local function items_of(result, encoding, bufnr)
  local items, seen = {}, {}
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  for _, raw in ipairs(result and (result.items or result) or {}) do
    local text = type(raw.insertText) == 'table' and raw.insertText.value or raw.insertText
    local item = { text = text, row = row - 1, col = col }
    if raw.range then
      local start = raw.range.start
      local line = vim.api.nvim_buf_get_lines(bufnr, start.line, start.line + 1, false)[1] or ''
      item.row, item.col = start.line, vim.str_byteindex(line, encoding, start.character, false)
    end
    local key = ('%d:%d:%s'):format(item.row, item.col, text)
    if type(text) == 'string' and text ~= '' and not seen[key] then
      seen[key] = true
      items[#items + 1] = item
    end
  end
  return items
end

--- Ask the server for suggestions at the cursor now, cancelling the request in flight.
---@param bufnr integer?
function M.request(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local b = buffers[bufnr]
  local client = b and vim.lsp.get_client_by_id(b.client_id)
  if not b or not client or vim.api.nvim_get_current_buf() ~= bufnr or not vim.fn.mode():find('^i') then
    return
  end
  cancel(bufnr)
  local tick = vim.b[bufnr].changedtick
  local cursor = vim.api.nvim_win_get_cursor(0)
  local suffix = vim.api.nvim_get_current_line():sub(cursor[2] + 1)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding) --[[@as lsp.InlineCompletionParams]]
  params.context = { triggerKind = 2 } -- Automatic
  local request_id ---@type integer?
  local ok, id = client:request(INLINE, params, function(err, result)
    if b.request_id ~= request_id then
      return -- superseded or cancelled
    end
    b.request_id = nil
    if err then
      set_state('error', err.message)
      return
    elseif status.state == 'waiting' or status.state == 'error' then
      set_state('ready') -- an answer again after an error
    end
    if vim.api.nvim_get_current_buf() ~= bufnr or not vim.fn.mode():find('^i') then
      return
    end
    local now = vim.api.nvim_win_get_cursor(0)
    if vim.b[bufnr].changedtick ~= tick or now[1] ~= cursor[1] or now[2] ~= cursor[2] then
      return -- computed for an older buffer or cursor
    end
    b.items, b.index, b.suffix = items_of(result, client.offset_encoding, bufnr), 1, suffix
    render(bufnr)
  end, bufnr)
  if ok then
    request_id = id
    b.request_id = id
    if status.state == 'ready' then
      set_state('waiting')
    end
  end
end

--- After an edit or cursor move in insert mode: keep a suggestion the typed text still
--- matches (typing through it), else hide it and ask again after the debounce.
---@param bufnr integer
local function on_change(bufnr)
  local b = buffers[bufnr]
  if not b then
    return
  end
  if b.extmark and render(bufnr) then
    return
  end
  clear(bufnr)
  if status.enabled and M.config.auto_trigger then
    b.timer:start(
      M.config.debounce_ms,
      0,
      vim.schedule_wrap(function()
        if buffers[bufnr] == b then
          M.request(bufnr)
        end
      end)
    )
  end
end

-- Accepting and cycling -----------------------------------------------------------------------

--- What accepting `what` takes of `ghost` (the suggestion not typed yet): all of it, its next
--- word or the rest of its current line; at a line's end, the line break and the next line's
--- indent (a word) or the whole next line (a line).
---@param ghost string
---@param what? 'all'|'word'|'line'
---@return string
local function part_of(ghost, what)
  if what ~= 'word' and what ~= 'line' then
    return ghost
  end
  local first = ghost:match('^[^\n]*')
  if first == '' then
    return ghost:match(what == 'word' and '^\n[ \t]*' or '^\n[^\n]*')
  elseif what == 'word' then
    return first:match('^%s*[%w_]+') or first:match('^%s*[^%w_%s]+') or first
  end
  return first
end

--- Replace the buffer from (row, col) to the cursor by `text` and leave the cursor at its end.
---@param bufnr integer
---@param row integer 0-based
---@param col integer 0-based byte column
---@param text string
local function insert_at(bufnr, row, col, text)
  local lines = vim.split(text, '\n', { plain = true })
  local cursor = vim.api.nvim_win_get_cursor(0)
  vim.api.nvim_buf_set_text(bufnr, row, col, cursor[1] - 1, cursor[2], lines)
  vim.api.nvim_win_set_cursor(0, { row + #lines, (#lines == 1 and col or 0) + #lines[#lines] })
end

--- The built-in path's accept handler for a part of its item (`get({ on_accept = ... })`): the
--- item's range start to the cursor is replaced by what was typed there plus `what` of the rest.
---@param bufnr integer
---@param what 'word'|'line'
---@return fun(item: table) for `vim.lsp.inline_completion.get`
local function accept_builtin(bufnr, what)
  ---@param item { insert_text: string|{ value: string }, range?: { start: { row: integer, col: integer } } }
  return function(item)
    if type(item.insert_text) ~= 'string' then
      vim.snippet.expand(item.insert_text.value) -- a snippet goes in whole, as the built-in does it
      return
    end
    local cursor = vim.api.nvim_win_get_cursor(0)
    local row, col = cursor[1] - 1, cursor[2]
    local start = item.range and item.range.start or { row = row, col = col }
    if start.row > row or (start.row == row and start.col > col) then
      return -- the cursor left the item's range
    end
    local typed = table.concat(vim.api.nvim_buf_get_text(bufnr, start.row, start.col, row, col, {}), '\n')
    local text = item.insert_text --[[@as string]]
    if text:sub(1, #typed) == typed and #text > #typed then
      insert_at(bufnr, start.row, start.col, typed .. part_of(text:sub(#typed + 1), what))
    end
  end
end

--- Insert the shown suggestion, or its next word or line, at the item's range.
---@param what? 'all'|'word'|'line'
---@param bufnr integer?
function M.accept(what, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  if use_builtin() then
    local word_or_line = what == 'word' or what == 'line'
    vim.lsp.inline_completion.get({ bufnr = bufnr, on_accept = word_or_line and accept_builtin(bufnr, what) or nil })
    return
  end
  local b = buffers[bufnr]
  local item = b and b.items[b.index]
  local ghost = b and remaining(b, item)
  if not ghost or not item then
    return
  end
  local part = part_of(ghost, what)
  insert_at(bufnr, item.row, item.col, item.text:sub(1, #item.text - #ghost) .. part)
  if part == ghost then
    clear(bufnr) -- the next edit or cursor move asks for the next suggestion
  else
    render(bufnr) -- the rest stays shown, as if typed through
  end
end

--- Show the next (`step` 1) or previous (-1) draft that still fits the typed text; with no
--- suggestion shown, ask for one now.
---@param step integer
---@param bufnr integer?
function M.cycle(step, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local b = buffers[bufnr]
  if not b then
    return
  end
  if not b.extmark then
    M.request(bufnr)
    return
  end
  local n = #b.items
  for i = 1, n do
    local index = (b.index - 1 + step * i) % n + 1
    if remaining(b, b.items[index]) then
      b.index = index
      break
    end
  end
  render(bufnr)
end

--- Change server settings while it runs (`workspace/didChangeConfiguration`, merged over the
--- current ones, and into `vim.lsp.config.livekv` for the next start). The model settings
--- (`modelPath`, `threads`, `weights`, `device`) take effect after a restart:
--- `vim.lsp.enable('livekv', false)`, then `vim.lsp.enable('livekv')`.
---@param settings table<string, any> camelCase names, as in `config.settings`
function M.configure(settings)
  M.config.settings = vim.tbl_extend('force', M.config.settings, settings)
  vim.lsp.config('livekv', { init_options = M.config.settings, settings = M.config.settings })
  for _, client in ipairs(vim.lsp.get_clients({ name = 'livekv' })) do
    client.settings = M.config.settings
    client:notify('workspace/didChangeConfiguration', { settings = M.config.settings })
  end
end

--- Turn automatic suggestions on or off (everywhere).
function M.toggle()
  status.enabled = not status.enabled
  if use_builtin() then
    -- Per buffer, as `attach` enabled it (the built-in's `bufnr` and `client_id` filters are
    -- mutually exclusive, and a buffer stays off unless enabled for itself or globally).
    for _, client in ipairs(vim.lsp.get_clients({ name = 'livekv' })) do
      for bufnr in pairs(client.attached_buffers) do
        vim.lsp.inline_completion.enable(status.enabled, { bufnr = bufnr })
      end
    end
  elseif not status.enabled then
    for bufnr in pairs(buffers) do
      clear(bufnr)
    end
  end
  vim.notify('livekv: suggestions ' .. (status.enabled and 'on' or 'off'))
end

-- Keymaps -------------------------------------------------------------------------------------

--- Map `lhs` in insert mode: `action` when a suggestion is shown, else the key itself.
---@param bufnr integer
---@param lhs string|false
---@param action string Lua run through <Cmd>, outside the expression's text lock
---@param desc string
---@param always? boolean run `action` even when nothing is shown
local function map(bufnr, lhs, action, desc, always)
  if not lhs then
    return
  end
  vim.keymap.set('i', lhs, function()
    if always or M.visible(bufnr) then
      return '<Cmd>lua ' .. action .. '<CR>'
    end
    return lhs
  end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = 'livekv: ' .. desc })
end

--- The keys on the built-in path (0.12+): `get()` accepts (all, or a part through `on_accept`)
--- and returns false when nothing is shown, so the key keeps its meaning; `select()` cycles.
---@param bufnr integer
local function map_builtin(bufnr)
  local keys = M.config.keymaps
  local accepts = {
    { keys.accept, nil, 'accept the suggestion' },
    { keys.accept_word, accept_builtin(bufnr, 'word'), 'accept a word' },
    { keys.accept_line, accept_builtin(bufnr, 'line'), 'accept a line' },
    { keys.dismiss, function() end, 'dismiss' }, -- get() hides and cancels; nothing is inserted
  }
  for _, key in ipairs(accepts) do
    local lhs, on_accept = key[1], key[2]
    if lhs then
      vim.keymap.set('i', lhs, function()
        if not vim.lsp.inline_completion.get({ bufnr = bufnr, on_accept = on_accept }) then
          return lhs
        end
      end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = 'livekv: ' .. key[3] })
    end
  end
  for _, key in ipairs({ { keys.next, 1, 'next draft' }, { keys.prev, -1, 'previous draft' } }) do
    if key[1] then
      vim.keymap.set('i', key[1], function()
        vim.lsp.inline_completion.select({ bufnr = bufnr, count = key[2] })
      end, { buffer = bufnr, desc = 'livekv: ' .. key[3] })
    end
  end
end

-- Attaching -----------------------------------------------------------------------------------

---@param client vim.lsp.Client
---@param bufnr integer
local function attach(client, bufnr)
  if use_builtin() then
    vim.lsp.inline_completion.enable(status.enabled, { bufnr = bufnr })
    map_builtin(bufnr)
    return
  end
  if buffers[bufnr] then
    return
  end
  buffers[bufnr] = { client_id = client.id, items = {}, index = 1, suffix = '', timer = assert(vim.uv.new_timer()) }
  local group = vim.api.nvim_create_augroup('livekv.' .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd({ 'TextChangedI', 'CursorMovedI' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      on_change(bufnr)
    end,
  })
  vim.api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      clear(bufnr)
    end,
  })
  local keys, mod = M.config.keymaps, 'require("livekv")'
  map(bufnr, keys.accept, mod .. '.accept("all")', 'accept the suggestion')
  map(bufnr, keys.accept_word, mod .. '.accept("word")', 'accept a word')
  map(bufnr, keys.accept_line, mod .. '.accept("line")', 'accept a line')
  map(bufnr, keys.next, mod .. '.cycle(1)', 'next draft', true)
  map(bufnr, keys.prev, mod .. '.cycle(-1)', 'previous draft', true)
  map(bufnr, keys.dismiss, mod .. '.dismiss()', 'dismiss')
end

---@param bufnr integer
local function detach(bufnr)
  local b = buffers[bufnr]
  if b then
    clear(bufnr)
    b.timer:close()
    buffers[bufnr] = nil
    pcall(vim.api.nvim_del_augroup_by_name, 'livekv.' .. bufnr)
  end
end

--- The server's notifications: `livekv/status` after each suggestion, `$/progress` while loading.
local handlers = {
  ['livekv/status'] = function(_, result)
    status.latency_ms, status.first_token_ms = result.latencyMs, result.firstTokenMs
    status.model = result.model ~= vim.NIL and result.model or status.model
    refresh()
  end,
}

--- The workspace root of `bufnr`: the first directory upwards with one of `root_markers`, else
--- the file's directory (Neovim's own `root_markers` field has no such fallback).
---@param bufnr integer
---@param on_dir fun(root_dir?: string)
local function root_dir(bufnr, on_dir)
  local file = vim.api.nvim_buf_get_name(bufnr)
  on_dir(vim.fs.root(bufnr, M.config.root_markers) or (file ~= '' and vim.fs.dirname(file)) or vim.fn.getcwd())
end

--- The `vim.lsp.config('livekv', ...)` fields from `M.config`.
---@return vim.lsp.Config
local function lsp_config()
  -- An empty Lua table would be sent as a JSON list; the server wants an object.
  local settings = next(M.config.settings) and M.config.settings or vim.empty_dict()
  return {
    cmd = M.config.cmd,
    filetypes = M.config.filetypes,
    root_dir = root_dir,
    init_options = settings,
    settings = settings,
    handlers = handlers,
    before_init = function()
      if status.state == 'off' or status.state == 'error' then
        set_state('starting')
      end
    end,
    on_exit = function(code)
      if code == 0 then
        set_state('off')
      else
        set_state('error', ('server exited with code %d'):format(code))
      end
    end,
  }
end

--- The id of the running livekv client, if any.
---@return integer?
function M.client_id()
  local client = vim.lsp.get_clients({ name = 'livekv' })[1]
  return client and client.id
end

--- The state shown by `statusline()` and `:checkhealth livekv` (a copy).
---@return livekv.Status
function M.status()
  return vim.deepcopy(status)
end

--- A short status line component: `livekv loading model`, `livekv 83ms`, `livekv …`, `livekv off`.
---@return string
function M.statusline()
  local s = status
  if s.state == 'off' then
    return 'livekv off'
  elseif s.state == 'starting' or s.state == 'loading' then
    return 'livekv ' .. (s.message or 'starting'):gsub('^livekv: ', '')
  elseif s.state == 'error' then
    return 'livekv error'
  end
  local text = s.enabled and 'livekv' or 'livekv paused'
  if s.state == 'waiting' then
    return text .. ' …'
  end
  return s.latency_ms and ('%s %dms'):format(text, s.latency_ms) or text
end

--- Start livekv for the configured filetypes; `opts` overrides the defaults at the top of this file.
--- Neovim starts the client: `vim.lsp.config('livekv', ...)`, then `vim.lsp.enable('livekv')`
--- (which also starts it for the buffers already open).
---@param opts? livekv.Config
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  status.builtin = use_builtin()
  vim.api.nvim_clear_autocmds({ group = augroup })
  vim.api.nvim_create_autocmd('LspAttach', {
    group = augroup,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == 'livekv' then
        if client.initialized and status.state == 'starting' then
          set_state('ready')
        end
        attach(client, ev.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = augroup,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == 'livekv' then
        detach(ev.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd('LspProgress', {
    group = augroup,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      local value = ev.data.params.value
      if not client or client.name ~= 'livekv' or type(value) ~= 'table' then
        return
      end
      local token = ev.data.params.token
      if value.kind == 'begin' then
        set_state('loading', value.title)
        progress_titles[token] = value.title
      elseif value.kind == 'end' then
        set_state('ready')
        if progress_titles[token] == 'livekv: loading model' then -- it ends with the model's name
          if value.message == 'failed' then
            set_state('error', 'the model failed to load (see :LspLog)')
          elseif value.message then
            status.model = value.message
          end
        end
        progress_titles[token] = nil
      end
    end,
  })
  if type(M.config.cmd) == 'table' and vim.fn.executable(M.config.cmd[1]) == 0 then
    -- vim.lsp.enable() only logs this (:LspLog) and starts nothing.
    vim.notify(('livekv: %q is not executable; set `cmd` in setup()'):format(M.config.cmd[1]), vim.log.levels.WARN)
  end
  vim.lsp.config('livekv', lsp_config())
  vim.lsp.enable('livekv')
end

return M
