--- livekv for Neovim: ghost-text code completion from the `livekv serve` language server.
---
--- `require('livekv').setup({...})` starts the server with `vim.lsp.start` for the buffers of
--- `filetypes`. On Neovim 0.12+ the built-in `vim.lsp.inline_completion` shows the suggestions;
--- on 0.11 this file carries a small equivalent: a debounced `textDocument/inlineCompletion`
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
  --- The command that starts the server on stdio (a list, as `vim.lsp.start` takes it).
  ---@type string[]
  cmd = { 'livekv', 'serve' },
  --- Server settings with the README's camelCase names (`threads`, `drafts`, `maxTokens`, ...),
  --- sent as `initializationOptions` and as `settings`; what is left out takes the server's default.
  ---@type table<string, any>
  settings = {},
  --- Buffers of these filetypes start (or reuse) the server.
  ---@type string[]
  filetypes = { 'python' },
  --- The first directory upwards holding one of these is the workspace root; else the file's directory.
  ---@type string[]
  root_markers = { 'pyproject.toml', 'setup.py', '.git' },
  --- Quiet time after the last keystroke or cursor move before a suggestion is asked for (ms).
  --- The server adds its own adaptive wait (its `debounceMs` setting) on top.
  debounce_ms = 75,
  --- Ask for suggestions while typing; false: only when `keymaps.next`/`prev` is pressed.
  auto_trigger = true,
  --- Use `vim.lsp.inline_completion` where Neovim has it (0.12+); false: always this file's own code.
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

--- Hide the ghost text, forget the items and stop the request in flight.
---@param bufnr integer?
function M.dismiss(bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local b = buffers[bufnr]
  if b then
    cancel(bufnr)
    hide(b, bufnr)
    b.items, b.index = {}, 1
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
  M.dismiss(bufnr)
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

--- Insert the shown suggestion, or its next word or line, at the item's range.
---@param what? 'all'|'word'|'line'
---@param bufnr integer?
function M.accept(what, bufnr)
  bufnr = bufnr or vim.api.nvim_get_current_buf()
  local b = buffers[bufnr]
  local item = b and b.items[b.index]
  local ghost = b and remaining(b, item)
  if not ghost or not item then
    return
  end
  local typed = item.text:sub(1, #item.text - #ghost)
  local part = ghost
  if what == 'word' or what == 'line' then
    local first = ghost:match('^[^\n]*')
    if first == '' then -- at the end of a line: the line break, and the indent or the next line
      part = ghost:match(what == 'word' and '^\n[ \t]*' or '^\n[^\n]*')
    elseif what == 'word' then
      part = first:match('^%s*[%w_]+') or first:match('^%s*[^%w_%s]+') or first
    else
      part = first
    end
  end
  local lines = vim.split(typed .. part, '\n', { plain = true })
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  vim.api.nvim_buf_set_text(bufnr, item.row, item.col, row - 1, col, lines)
  local last = item.row + #lines - 1
  vim.api.nvim_win_set_cursor(0, { last + 1, (#lines == 1 and item.col or 0) + #lines[#lines] })
  if part == ghost then
    M.dismiss(bufnr) -- the next edit or cursor move asks for the next suggestion
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
--- current ones); the model settings (`modelPath`, `threads`, `weights`, `device`) need a restart.
---@param settings table<string, any> camelCase names, as in `config.settings`
function M.configure(settings)
  M.config.settings = vim.tbl_extend('force', M.config.settings, settings)
  for _, client in ipairs(vim.lsp.get_clients({ name = 'livekv' })) do
    client.settings = M.config.settings
    client:notify('workspace/didChangeConfiguration', { settings = M.config.settings })
  end
end

--- Turn automatic suggestions on or off (everywhere).
function M.toggle()
  status.enabled = not status.enabled
  if use_builtin() then
    vim.lsp.inline_completion.enable(status.enabled, { client_id = M.client_id() })
  elseif not status.enabled then
    for bufnr in pairs(buffers) do
      M.dismiss(bufnr)
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

---@param bufnr integer
local function map_builtin(bufnr)
  local keys = M.config.keymaps
  if keys.accept then
    vim.keymap.set('i', keys.accept, function()
      if not vim.lsp.inline_completion.get({ bufnr = bufnr }) then
        return keys.accept
      end
    end, { buffer = bufnr, expr = true, replace_keycodes = true, desc = 'livekv: accept' })
  end
  for _, key in ipairs({ { keys.next, 1 }, { keys.prev, -1 } }) do
    if key[1] then
      vim.keymap.set('i', key[1], function()
        vim.lsp.inline_completion.select({ bufnr = bufnr, count = key[2] })
      end, { buffer = bufnr, desc = 'livekv: other draft' })
    end
  end
end

-- Attaching -----------------------------------------------------------------------------------

---@param client vim.lsp.Client
---@param bufnr integer
local function attach(client, bufnr)
  if use_builtin() then
    vim.lsp.inline_completion.enable(status.enabled, { bufnr = bufnr, client_id = client.id })
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
      M.dismiss(bufnr)
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
    M.dismiss(bufnr)
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

---@param bufnr integer
local function start(bufnr)
  if vim.bo[bufnr].buftype ~= '' or not vim.tbl_contains(M.config.filetypes, vim.bo[bufnr].filetype) then
    return
  end
  local file = vim.api.nvim_buf_get_name(bufnr)
  local root = vim.fs.root(bufnr, M.config.root_markers) or (file ~= '' and vim.fs.dirname(file)) or vim.fn.getcwd()
  if status.state == 'off' then
    set_state('starting')
  end
  -- An empty Lua table would be sent as a JSON list; the server wants an object.
  local settings = next(M.config.settings) and M.config.settings or vim.empty_dict()
  vim.lsp.start({
    name = 'livekv',
    cmd = M.config.cmd,
    root_dir = root,
    init_options = settings,
    settings = settings,
    handlers = handlers,
    on_exit = function(code)
      if code == 0 then
        set_state('off')
      else
        set_state('error', ('server exited with code %d'):format(code))
      end
    end,
  }, { bufnr = bufnr })
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
---@param opts? livekv.Config
function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', vim.deepcopy(defaults), opts or {})
  status.builtin = use_builtin()
  vim.api.nvim_clear_autocmds({ group = augroup })
  vim.api.nvim_create_autocmd('FileType', {
    group = augroup,
    pattern = M.config.filetypes,
    callback = function(ev)
      start(ev.buf)
    end,
  })
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
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) then
      start(bufnr)
    end
  end
end

return M
