/**
 * States of the descriptor hand-off handshake (ConnectionTask.adopted), in a
 * module of their own so the worker entry can import them without loading the
 * primary's pool code.
 */
export const ADOPT_NONE = 0 //     the worker has not touched the descriptor
export const ADOPT_TAKING = 1 //   about to wrap it in a socket
export const ADOPT_WRAPPED = 2 //  a socket owns it: the thread's teardown closes it
