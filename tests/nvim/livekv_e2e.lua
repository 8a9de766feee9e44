--- Headless Neovim 0.11 driving the real livekv server through its own LSP client.
---
--- Defines the server with `vim.lsp.config` and `vim.lsp.enable`, opens a Python file (which
--- starts the client), lets Neovim send incremental didChange for edits made through its API and
--- typed in insert mode, asks the server for its copies of the document
--- (`livekv/documentState`) after each step, and requests `textDocument/inlineCompletion`
--- from insert mode with the cursor after a partial line. Everything it saw goes to a JSON
--- report that tests/test_neovim.py checks; errors are recorded there, never raised.
---
--- Usage: nvim --clean -n -l tests/nvim/livekv_e2e.lua CONFIG.json
--- CONFIG: { file, out, cmd, cmd_cwd, cmd_env, root_dir, init_options, load_timeout_ms, request_timeout_ms }

local config = vim.json.decode(table.concat(vim.fn.readfile(arg[1]), '\n'))

---@class livekv.Report
local report = {
  nvim = tostring(vim.version()),
  steps = {}, ---@type table[] one { name, buffer, state } per checkpoint
  messages = {}, ---@type table[] window/showMessage and window/logMessage from the server
  errors = {}, ---@type string[]
}

local bufnr ---@type integer
local client ---@type vim.lsp.Client

--- The text Neovim's client sends for the buffer: lines joined by "\n", plus "\n" when 'eol' is set.
local function buffer_text()
  local text = table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true), '\n')
  return vim.bo[bufnr].eol and text .. '\n' or text
end

--- A request through the client; its result, or an error naming the method and the reason.
local function request(method, params, timeout_ms)
  local response, reason = client:request_sync(method, params, timeout_ms or config.request_timeout_ms, bufnr)
  if not response then
    error(('%s: no response (%s)'):format(method, reason or 'client stopped'), 0)
  end
  if response.err then
    error(('%s: %s'):format(method, vim.inspect(response.err)), 0)
  end
  return response.result
end

--- Record the buffer and the server's three copies of it under `name`.
local function checkpoint(name, timeout_ms)
  -- request_sync flushes the pending (debounced) didChange first, so the server has every edit.
  local state = request('livekv/documentState', { uri = vim.uri_from_bufnr(bufnr) }, timeout_ms)
  table.insert(report.steps, { name = name, buffer = buffer_text(), state = state })
  return state
end

--- Byte column just after the first occurrence of `needle` in line `row` (0-based).
local function col_after(row, needle)
  local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, true)[1]
  local start = assert(line:find(needle, 1, true), ('%q not on line %d'):format(needle, row))
  return start - 1 + #needle
end

--- Row (0-based) of the first line equal to `text`.
local function row_of(text)
  for i, line in ipairs(vim.api.nvim_buf_get_lines(bufnr, 0, -1, true)) do
    if line == text then
      return i - 1
    end
  end
  error(('no line %q'):format(text), 0)
end

--- Type `keys` as a user would (insert mode included), then leave insert mode.
local function type_keys(keys)
  vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(keys, true, false, true), 'tx', false)
end

local function start_server()
  -- Neovim 0.11's own way to run a server: a config, enabled; opening the file (its FileType)
  -- starts the client and attaches the buffer.
  vim.lsp.config('livekv', {
    cmd = config.cmd,
    cmd_cwd = config.cmd_cwd,
    cmd_env = config.cmd_env,
    filetypes = { 'python' },
    root_dir = config.root_dir,
    init_options = config.init_options,
    handlers = {
      ['window/showMessage'] = function(_, result)
        table.insert(report.messages, result)
      end,
      ['window/logMessage'] = function(_, result)
        table.insert(report.messages, result)
      end,
    },
    on_exit = function(code, signal)
      report.server_exit = { code = code, signal = signal }
    end,
  })
  vim.lsp.enable('livekv')

  vim.cmd.edit(vim.fn.fnameescape(config.file))
  bufnr = vim.api.nvim_get_current_buf()
  vim.bo[bufnr].filetype = 'python'
  -- Typed text lands exactly as typed: no indent plugin or wrapping in between.
  vim.bo[bufnr].indentexpr = ''
  vim.bo[bufnr].autoindent = false
  vim.bo[bufnr].smartindent = false
  vim.bo[bufnr].textwidth = 0

  -- get_clients() lists a client once it is initialized (and the buffer attached).
  local ok = vim.wait(config.load_timeout_ms, function()
    client = vim.lsp.get_clients({ bufnr = bufnr, name = 'livekv' })[1]
    return client ~= nil or report.server_exit ~= nil
  end, 20)
  assert(ok and client and client.initialized, 'no initialized livekv client (none started, it exited or timed out)')
  local caps = client.server_capabilities or {}
  report.capabilities = {
    inlineCompletionProvider = caps.inlineCompletionProvider == nil and vim.NIL or caps.inlineCompletionProvider,
    positionEncoding = caps.positionEncoding or vim.NIL,
    textDocumentSync = caps.textDocumentSync or vim.NIL,
  }
  report.offset_encoding = client.offset_encoding
  assert(vim.lsp.buf_is_attached(bufnr, client.id), 'the buffer is not attached to livekv')

  -- The server loads the model in `initialized`; the worker answers in order, so this
  -- returns once the model is loaded and the document opened (or failed to load).
  checkpoint('opened', config.load_timeout_ms)
end

local function edit_and_complete()
  -- An edit inside a line, then whole lines inserted and deleted, through Neovim's API.
  local add = row_of('    def add(self, item, price):')
  for row = add, add + 1 do -- `price` -> `cost` in the signature and the body
    vim.api.nvim_buf_set_text(bufnr, row, col_after(row, 'item, '), row, col_after(row, 'item, price'), { 'cost' })
  end
  local after = row_of('        self.selected = None') + 1
  vim.api.nvim_buf_set_lines(bufnr, after, after, true, { '        self.count = 0' })
  local pass = row_of('        pass')
  vim.api.nvim_buf_set_lines(bufnr, pass, pass + 1, true, {})
  checkpoint('api edits')

  -- Typed in insert mode below `def current(self):`; the request goes out from insert mode
  -- with the cursor after `sel`, as an inline-completion plugin would send it.
  vim.api.nvim_win_set_cursor(0, { row_of('    def current(self):') + 1, 0 })
  _G.livekv_in_insert_mode = function()
    local ok, err = xpcall(function()
      report.mode = vim.api.nvim_get_mode().mode
      checkpoint('typed')
      local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
      params.context = { triggerKind = 1 } -- Invoked
      report.inline = { params = params, line = vim.api.nvim_get_current_line() }
      local result = request('textDocument/inlineCompletion', params)
      report.inline.result = result == nil and vim.NIL or result
    end, debug.traceback)
    if not ok then
      table.insert(report.errors, err)
    end
  end
  type_keys('o        return sel<Cmd>lua livekv_in_insert_mode()<CR>')
end

local function edit_after_non_ascii()
  -- Columns after multi-byte characters: UTF-8, UTF-16 and UTF-32 counts all differ here.
  vim.api.nvim_buf_set_text(bufnr, 0, col_after(0, '€'), 0, col_after(0, '€'), { ' (£ too 😀)' })
  vim.api.nvim_win_set_cursor(0, { row_of('        self.owner = owner  # “pâtissier” 🍰') + 1, 0 })
  type_keys('A, ok<Esc>')
  checkpoint('non-ascii')
end

for _, step in ipairs({ start_server, edit_and_complete, edit_after_non_ascii }) do
  local ok, err = xpcall(step, debug.traceback)
  if not ok then
    table.insert(report.errors, err)
    break
  end
end

if client then
  client:stop() -- shutdown, then exit
  -- is_stopped() turns true as soon as stop() is called; on_exit says the server has gone.
  vim.wait(config.request_timeout_ms, function()
    return report.server_exit ~= nil
  end, 20)
end
vim.fn.writefile({ vim.json.encode(report) }, config.out)
vim.cmd('qa!')
